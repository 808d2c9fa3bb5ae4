package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/concurrency"
)

// An instance with a limit of two requests at once: the third is refused
// until one finishes.
func ExampleSlots() {
	inst := concurrency.NewSlots(concurrency.Shared, 2)
	fmt.Println(inst.TryAcquire(), inst.TryAcquire(), inst.TryAcquire())
	fmt.Printf("in flight %d, utilization %.1f\n", inst.InFlight(), inst.Utilization())
	inst.Release()
	fmt.Println(inst.TryAcquire())
	// Output:
	// true true false
	// in flight 2, utilization 1.0
	// true
}

// The function-wide limit is taken before an instance slot and refuses the
// excess with a typed error.
func ExampleFunctionLimit() {
	fn := concurrency.NewFunctionLimit(1)
	if err := fn.Acquire(); err == nil {
		defer fn.Release()
	}
	err := fn.Acquire()
	fmt.Println(errors.Is(err, concurrency.ErrFunctionLimit))
	// Output: true
}

// A request that finds no free slot waits in the queue; the request that
// finishes hands its slot straight to it (or, if it finishes before the
// other has queued, gives the slot back, and the newcomer takes it there).
func ExampleQueue() {
	inst := concurrency.NewSlots(concurrency.Shared, 1)
	q, err := concurrency.NewQueue(concurrency.QueueConfig[*concurrency.Slots]{
		MaxWaiters: 100,
		MaxWait:    5 * time.Second,
		TryAcquire: func() (*concurrency.Slots, bool) { return inst, inst.TryAcquire() },
		Release:    func(s *concurrency.Slots) { s.Release() },
	})
	if err != nil {
		panic(err)
	}
	defer q.Close()

	ctx := context.Background()
	first, _ := q.Acquire(ctx) // a free slot: no wait
	go q.Release(first)        // the first request finishes
	second, err := q.Acquire(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("in flight:", second.InFlight())
	q.Release(second)
	fmt.Println("in flight:", inst.InFlight())
	// Output:
	// in flight: 1
	// in flight: 0
}

// A Meter and the default policy on virtual time: 35 requests in flight on
// instances with a limit of 10 ask for ceil(35 / 7) = 5 instances.
func ExampleKPA() {
	meter, _ := concurrency.NewMeter(concurrency.MeterConfig{})
	policy, _ := concurrency.NewKPA(concurrency.KPAConfig{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	instances := 5
	var d concurrency.Decision
	for sec := 0; sec <= 60; sec++ {
		now := start.Add(time.Duration(sec) * time.Second)
		meter.Observe(now, 35)
		if sec%2 == 0 {
			o := meter.Observation(now)
			o.Instances, o.InstanceLimit = instances, 10
			d = policy.Decide(now, o)
			instances = d.Desired
		}
	}
	fmt.Printf("desired %d, panicking %v\n", d.Desired, d.Panicking)
	// Output: desired 5, panicking false
}
