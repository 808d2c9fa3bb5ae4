package router_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// startInstance returns an instance that has gone through a cold start and
// is Ready; the router observes its transitions.
func startInstance(r *router.Router, id, fn string, now time.Time) *lifecycle.Instance {
	inst := lifecycle.NewInstance(lifecycle.Info{ID: id, FunctionID: fn, Addr: "10.0.0.7:8080"}, now, r)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		if err := inst.Transition(now, s, "cold start"); err != nil {
			panic(err)
		}
	}
	return inst
}

// The path of one request: pick an instance with a free slot, send the
// request there, release the slot with the outcome.
func Example() {
	r, err := router.New(router.Config{}, router.Hooks{}) // P2C on utilization
	if err != nil {
		panic(err)
	}
	now := time.Now()
	inst := startInstance(r, "resize-1", "orders/resize-image", now)
	if err := r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 4), nil); err != nil {
		panic(err)
	}

	rt, err := r.Pick("orders/resize-image")
	switch {
	case errors.Is(err, router.ErrNoRoute), errors.Is(err, router.ErrNoCapacity):
		fmt.Println("cold start or queue")
		return
	case err != nil:
		panic(err)
	}
	fmt.Println("send to", rt.Instance().ID, "at", rt.Instance().Addr)
	// ... proxy the request; classify its error with router.OutcomeOf ...
	rt.Release(time.Now(), router.OutcomeOf(nil))

	routable, free := r.Capacity("orders/resize-image")
	fmt.Println("routable:", routable, "free slots:", free)
	// Output:
	// send to resize-1 at 10.0.0.7:8080
	// routable: 1 free slots: 4
}

// A request that failed before reaching the function is retried once on
// another instance, within the function's retry budget.
func ExampleRouter_Retry() {
	r, _ := router.New(router.Config{Policy: router.FirstAvailable()}, router.Hooks{})
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		_ = r.Add(now, startInstance(r, id, "fn", now), concurrency.NewSlots(concurrency.Shared, 10), nil)
	}
	rt, _ := r.Pick("fn")
	outcome := router.OutcomeOf(lifecycle.CodeNotReady) // what the agent answered
	rt.Release(now, outcome)
	fmt.Println("first try:", rt.Instance().ID, outcome)

	again, err := r.Retry(rt, outcome, false)
	if err != nil {
		panic(err)
	}
	fmt.Println("retry:", again.Instance().ID)
	again.Release(now, router.Success)

	_, err = r.Retry(again, router.InstanceFailed, false)
	fmt.Println("retry a retry:", errors.Is(err, router.ErrNotRetryable))
	// Output:
	// first try: a not_ready
	// retry: b
	// retry a retry: true
}

// Outlier ejection on virtual time: five consecutive failures eject an
// instance for 30 s; when the ejection ends one probe request may pass, and
// its success readmits the instance.
func ExampleBreakerConfig() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, _ := router.New(router.Config{
		Breaker: router.BreakerConfig{Jitter: -1}, // no jitter, for a stable output
	}, router.Hooks{Observer: router.ObserverFunc(func(e router.Event) {
		fmt.Printf("%s %s (%s) at +%v\n", e.Instance.ID, e.Kind, e.Cause, e.At.Sub(now))
	})})
	inst := startInstance(r, "a", "fn", now)
	_ = r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 10), nil)
	for range 5 {
		rt, _ := r.Pick("fn")
		rt.Release(now, router.ConnectFailed)
	}
	_, err := r.Pick("fn")
	fmt.Println("pick:", err)

	// The health monitor's round ticks the breakers' clock.
	hm, _ := router.NewHealthMonitor(r, router.HealthConfig{Checker: router.CheckerFunc(func(context.Context, *lifecycle.Instance) error { return nil })})
	hm.RunOnce(context.Background(), now.Add(30*time.Second))
	probe, _ := r.Pick("fn")
	fmt.Println("probe:", probe.Probe())
	probe.Release(now.Add(31*time.Second), router.Success)
	// Output:
	// a added (caller) at +0s
	// a ejected (breaker) at +0s
	// pick: router: no routable instance
	// a half-open (breaker) at +30s
	// probe: true
	// a readmitted (breaker) at +31s
}

// RunOnce drives the health monitor on virtual time, as a simulator does;
// in production Start runs it on a ticker.
func ExampleHealthMonitor_RunOnce() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, _ := router.New(router.Config{}, router.Hooks{})
	inst := startInstance(r, "a", "fn", now)
	_ = r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 10), nil)

	down := router.CheckerFunc(func(ctx context.Context, inst *lifecycle.Instance) error {
		return errors.New("connection refused")
	})
	h, _ := router.NewHealthMonitor(r, router.HealthConfig{Checker: down})
	defer h.Close()
	for s := 0; s <= 6; s += 2 { // readiness: every 2 s, out after 3 failures
		h.RunOnce(context.Background(), now.Add(time.Duration(s)*time.Second))
		fmt.Printf("+%ds %s\n", s, inst.State())
	}
	// Output:
	// +0s Ready
	// +2s Ready
	// +4s Ready
	// +6s Unhealthy
}

// leastInFlight is a custom policy: the instance with the fewest requests in
// flight, whatever its limit.
type leastInFlight struct{}

func (leastInFlight) Name() string { return "least-in-flight" }

func (leastInFlight) NewPicker(cands []router.Candidate) router.Picker {
	return pickerFunc(func(rand.Source) int {
		best := -1
		for i, c := range cands {
			if c.Slots.Free() > 0 && (best < 0 || c.Slots.InFlight() < cands[best].Slots.InFlight()) {
				best = i
			}
		}
		return best
	})
}

type pickerFunc func(rand.Source) int

func (f pickerFunc) Pick(src rand.Source) int { return f(src) }

// A policy is a picker factory: the router builds a picker whenever a
// function's instances change and calls it on every request.
func ExamplePolicy() {
	r, _ := router.New(router.Config{Policy: leastInFlight{}}, router.Hooks{})
	now := time.Now()
	big := startInstance(r, "big", "fn", now)
	_ = r.Add(now, big, concurrency.NewSlots(concurrency.Shared, 100), nil)
	_ = r.Add(now, startInstance(r, "small", "fn", now), concurrency.NewSlots(concurrency.Shared, 2), nil)
	for range 3 {
		_, _ = r.Pick("fn")
	}
	rt, _ := r.Pick("fn")
	fmt.Println(r.Policy().Name(), "picked", rt.Instance().ID)
	// Output: least-in-flight picked small
}

// An instance's Waiters are a concurrency.Queue: a request that found no
// free slot waits in the queue, and the next released slot goes straight
// to it instead of back to the instance, where a newcomer could take it
// first.
func ExampleWaiters() {
	r, _ := router.New(router.Config{}, router.Hooks{})
	q, _ := concurrency.NewQueue(concurrency.QueueConfig[router.Route]{
		TryAcquire: func() (router.Route, bool) {
			rt, err := r.Pick("fn")
			return rt, err == nil
		},
		Release: func(rt router.Route) { rt.Release(time.Now(), router.Success) },
	})
	defer q.Close()
	now := time.Now()
	_ = r.Add(now, startInstance(r, "a", "fn", now), concurrency.NewSlots(concurrency.Shared, 1), q)

	first, _ := r.Pick("fn")
	_, err := r.Pick("fn")
	fmt.Println("second request:", err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		first.Release(time.Now(), router.Success) // the first request ends
	}()
	second, err := q.Acquire(context.Background()) // waits for its slot
	if err != nil {
		panic(err)
	}
	<-done
	fmt.Println("second request runs on", second.Instance().ID, "in flight:", r.Stats("fn").InFlight)
	second.Release(time.Now(), router.Success)
	fmt.Println("in flight:", r.Stats("fn").InFlight)
	// Output:
	// second request: router: every routable instance is at its concurrency limit
	// second request runs on a in flight: 1
	// in flight: 0
}
