// Command mqtrigger is a message-queue trigger on NATS JetStream: a stream
// of orders, and a trigger (package contrib/nats/trigger) that invokes a
// function for each message through Dataplane.Invoke, the in-process path
// that bypasses the HTTP gateway. It acknowledges a message only once the
// function answered, retries what failed for now after the Retry-After the
// function or the dataplane gave, dead-letters what still fails after 3
// deliveries to a stream of its own, and keeps at most 32 messages in
// flight, so that a backlog never floods the function.
//
// It starts an embedded NATS server with JetStream (or uses -nats), a
// Dataplane over local agent processes, and the function in ./orderfn,
// publishes -messages orders and prints the progress twice a second:
//
//	go run ./examples/mqtrigger -messages 2000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/trigger"
	"github.com/faasplane/faas/pods/local"
)

func main() {
	n := flag.Int("messages", 2000, "orders to publish")
	url := flag.String("nats", "", "NATS server URL (default: an embedded server with JetStream)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *n, *url); err != nil {
		fmt.Fprintln(os.Stderr, "mqtrigger:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, messages int, url string) error {
	dir, err := os.MkdirTemp("", "mqtrigger-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if url == "" {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
			StoreDir: filepath.Join(dir, "nats"), NoSigs: true, NoLog: true})
		if err != nil {
			return err
		}
		ns.Start()
		defer ns.Shutdown()
		if !ns.ReadyForConnections(10 * time.Second) {
			return errors.New("embedded NATS server not ready")
		}
		url = ns.ClientURL()
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for name, subj := range map[string]string{"ORDERS": "orders.>", "ORDERS_DEAD": "dead.orders"} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			return err
		}
	}

	// The dataplane and the function.
	pkg, err := code.PackGo(ctx, "github.com/faasplane/faas/contrib/nats/examples/mqtrigger/orderfn", code.Manifest{})
	if err != nil {
		return err
	}
	pkgPath := filepath.Join(dir, "orderfn.tar.gz")
	if err := os.WriteFile(pkgPath, pkg, 0o644); err != nil {
		return err
	}
	pods, err := local.New(ctx, local.Config{Dir: filepath.Join(dir, "pods")})
	if err != nil {
		return err
	}
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: dir})
	if err != nil {
		return err
	}
	defer origin.Close()
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin})
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	spec := faas.FunctionSpec{ID: "process-order", Runtime: "go", Code: code.RefFor("file://"+pkgPath, pkg), Concurrency: 8}
	if err := dp.Deploy(ctx, spec); err != nil {
		return err
	}

	// The trigger: ORDERS → process-order, dead letters to dead.orders.
	tr, err := trigger.New(trigger.Config{
		Dataplane: dp, JetStream: js, Stream: "ORDERS", Consumer: "process-order", FunctionID: "process-order",
		DeadLetterSubject: "dead.orders", MaxInFlight: 32, MaxDeliveries: 3, Idempotent: true,
	})
	if err != nil {
		return err
	}
	tctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Run(tctx) }()

	start := time.Now()
	for i := range messages {
		if _, err := js.PublishAsync("orders.new", fmt.Appendf(nil, `{"order":%d}`, i)); err != nil {
			stop()
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		stop()
		return errors.New("publish acks did not come within a minute")
	}
	fmt.Fprintf(w, "published %d orders in %v\n", messages, time.Since(start).Round(time.Millisecond))

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Minute)
	for settled := false; !settled; {
		select {
		case <-tick.C:
		case <-deadline:
			stop()
			return fmt.Errorf("not every order settled within 5 minutes: %+v", tr.Stats())
		}
		st := tr.Stats()
		fmt.Fprintf(w, "processed %5d  retried %4d  dead-lettered %3d  in flight %2d  %6.0f msgs/s\n",
			st.Processed, st.Retried, st.DeadLettered, st.InFlight, float64(st.Processed+st.DeadLettered)/time.Since(start).Seconds())
		settled = st.Processed+st.DeadLettered >= uint64(messages)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		return err
	}
	st := tr.Stats()
	dead, err := js.Stream(ctx, "ORDERS_DEAD")
	if err != nil {
		return err
	}
	info, err := dead.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "done in %v: %d processed, %d retried, %d dead-lettered (%d in ORDERS_DEAD), %d redelivered\n",
		time.Since(start).Round(time.Millisecond), st.Processed, st.Retried, st.DeadLettered, info.State.Msgs, st.Redelivered)
	if st.Processed+st.DeadLettered != uint64(messages) || info.State.Msgs != st.DeadLettered {
		return fmt.Errorf("%d orders published, %d processed and %d dead-lettered", messages, st.Processed, st.DeadLettered)
	}
	return nil
}
