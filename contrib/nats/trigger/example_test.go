package trigger_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go/jetstream"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/contrib/nats/trigger"
)

// printer stands in for a *faas.Dataplane: it prints each invocation,
// and closes third after the third.
type printer struct {
	n     int
	third chan struct{}
}

func (p *printer) Invoke(_ context.Context, req *faas.Request) (*faas.Response, error) {
	fmt.Printf("%s %s delivery %s: %s\n", req.FunctionID, req.RequestID, req.Header.Get(trigger.HeaderDelivery), req.Body)
	if p.n++; p.n == 3 {
		close(p.third)
	}
	return &faas.Response{StatusCode: 200}, nil
}

// A stream of orders invokes process-order for each message, one at a
// time here (MaxInFlight 1) so that the output is in order.
func Example() {
	srv, err := natstest.Start(natstest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	nc, err := natstest.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for name, subj := range map[string]string{"ORDERS": "orders.>", "DEAD": "dead.orders"} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			log.Fatal(err)
		}
	}
	for _, order := range []string{`{"order":1}`, `{"order":2}`, `{"order":3}`} {
		if _, err := js.Publish(ctx, "orders.new", []byte(order)); err != nil {
			log.Fatal(err)
		}
	}

	p := &printer{third: make(chan struct{})}
	tr, err := trigger.New(trigger.Config{
		Dataplane: p, // a *faas.Dataplane in production
		JetStream: js, Stream: "ORDERS", Consumer: "process-order", FunctionID: "process-order",
		DeadLetterSubject: "dead.orders", MaxInFlight: 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Run(rctx) }()
	<-p.third
	cancel()
	<-done // Run returns once the invocations in flight are settled
	fmt.Printf("%+v\n", tr.Stats())
	// Output:
	// process-order ORDERS-1 delivery 1: {"order":1}
	// process-order ORDERS-2 delivery 1: {"order":2}
	// process-order ORDERS-3 delivery 1: {"order":3}
	// {Received:3 Redelivered:0 Processed:3 Retried:0 DeadLettered:0 SettleErrors:0 InFlight:0}
}
