package health_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// A host publishes that a pod is down; a router subscribed through a
// Source takes the pod's instance out of its routes, and back when the
// host reports it up. A dataplane sets the Source as
// faas.Config.Health.Source instead of calling Watch itself.
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

	// The dataplane's side: a router with one instance, in pod "pod-1".
	changed := make(chan router.Event, 16)
	r, err := router.New(router.Config{}, router.Hooks{Observer: router.ObserverFunc(func(e router.Event) { changed <- e })})
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	inst := lifecycle.NewInstance(lifecycle.Info{ID: health.DefaultInstanceID("node-a", "pod-1"), FunctionID: "resize", PodID: "pod-1", Node: "node-a"}, now, r)
	if err := r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 4), nil); err != nil {
		log.Fatal(err)
	}
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		_ = inst.Transition(now, s, "cold start")
	}
	<-changed // added
	<-changed // readmitted: Ready
	// The host's side: node-a's publisher, which finds pod-1 hung.
	pub, err := health.NewPublisher(health.PublisherConfig{Conn: nc, Node: "node-a"})
	if err != nil {
		log.Fatal(err)
	}
	_ = pub.Update(health.PodStatus{Pod: "pod-1", Function: "resize", State: health.StateDown, Reason: "ping timed out"})

	// The source subscribes, and asks the hosts for their state: the
	// verdict published before it subscribed reaches it (in the snapshot,
	// or in the first heartbeat of the publisher's Run).
	src, err := health.NewSource(health.SourceConfig{Conn: nc})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = src.Watch(ctx, func(rep router.HealthReport) { _ = r.ReportHealth(time.Now(), rep) }) })
	wg.Go(func() { _ = pub.Run(ctx) })

	e := <-changed
	fmt.Println(e.Kind, e.Cause, e.Instance.ID, "routable:", r.Stats("resize").Routable)
	_ = pub.Update(health.PodStatus{Pod: "pod-1", Function: "resize", State: health.StateUp})
	e = <-changed
	fmt.Println(e.Kind, e.Cause, e.Instance.ID, "routable:", r.Stats("resize").Routable)
	// Output:
	// ejected health_push i-pod-1 routable: 0
	// readmitted health_push i-pod-1 routable: 1
}
