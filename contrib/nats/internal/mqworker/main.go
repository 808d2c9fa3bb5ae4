// Command mqworker is the process the at-least-once test kills: a
// Dataplane over pods/local (real faas-agent processes on loopback) and a
// trigger consuming a JetStream stream into one of its functions, as one
// process, the way a platform would deploy a trigger next to its
// dataplane. It prints "MQWORKER_READY" on stdout once the function is
// deployed and the trigger consumes, and stops gracefully on SIGTERM; the
// test kills it with SIGKILL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/trigger"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

func main() {
	var (
		natsURL  = flag.String("nats", nats.DefaultURL, "NATS URL")
		stream   = flag.String("stream", "ORDERS", "stream to consume")
		consumer = flag.String("consumer", "orders-trigger", "durable consumer")
		dead     = flag.String("dead-letter", "dead.orders", "dead-letter subject")
		fn       = flag.String("function", "recorder", "function ID")
		pkg      = flag.String("code", "", "the function's code package (.tar.gz)")
		agent    = flag.String("agent", "", "faas-agent binary")
		dir      = flag.String("dir", "", "directory of the pods and their caches")
		record   = flag.String("record", "", "file the function appends request IDs to")
		inFlight = flag.Int("max-in-flight", 64, "messages in flight")
		ackWait  = flag.Duration("ack-wait", 2*time.Second, "JetStream's ack wait")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *natsURL, *stream, *consumer, *dead, *fn, *pkg, *agent, *dir, *record, *inFlight, *ackWait); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "mqworker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, natsURL, stream, consumer, dead, fn, pkg, agent, dir, record string, inFlight int, ackWait time.Duration) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := os.ReadFile(pkg)
	if err != nil {
		return err
	}
	pods, err := local.New(ctx, local.Config{AgentPath: agent, Dir: dir})
	if err != nil {
		return err
	}
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: "/"})
	if err != nil {
		return err
	}
	defer origin.Close()
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin, Logger: log,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}}, ProbeInterval: -1}})
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	spec := faas.FunctionSpec{ID: fn, Runtime: "go", Code: code.RefFor("file://"+pkg, b), Concurrency: 32,
		MinInstances: 2, Env: map[string]string{"RECORD_FILE": record}}
	if err := dp.Deploy(ctx, spec); err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	tr, err := trigger.New(trigger.Config{Dataplane: dp, JetStream: js, Stream: stream, Consumer: consumer, FunctionID: fn,
		DeadLetterSubject: dead, MaxInFlight: inFlight, AckWait: ackWait, Idempotent: true, Logger: log})
	if err != nil {
		return err
	}
	fmt.Println("MQWORKER_READY")
	return tr.Run(ctx)
}
