package warmpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/warmpool"
)

// A manager keeps two idle "go" pods ready; a cold start takes one (at once
// when one is idle, otherwise after its creation), and deletes it when its
// instance ends.
func ExampleManager() {
	provider := faastest.NewPodProvider(faastest.PodProviderConfig{Nodes: []string{"node-a", "node-b"}})
	m, err := warmpool.New(provider, warmpool.Config{
		Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 8}},
		Prober:   provider, // its pods run no agent: the fake answers probes
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Prefer node-b, say because it caches the function's code.
	pod, err := m.Take(ctx, "go", func(p warmpool.Pod) int {
		if p.Node == "node-b" {
			return 1
		}
		return 0
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("runtime:", pod.Runtime)
	// ... load a function into the pod, serve, and at the end:
	if err := m.Delete(ctx, pod); err != nil {
		panic(err)
	}
	_, err = m.TryTake(ctx, "java", nil)
	fmt.Println(errors.Is(err, warmpool.ErrUnknownRuntime))
	// Output:
	// runtime: go
	// true
}

// The default sizing policy applies Little's law: 5 takes per second while
// creating a pod takes 800 ms means 4 takes during one creation; with the
// safety factor of 2, the pool keeps 8.
func ExampleEWMASizing() {
	s, err := warmpool.NewEWMASizing(warmpool.EWMASizingConfig{Min: 1, Max: 20})
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.ObserveCreate(now, 800*time.Millisecond)
	fmt.Println("idle target:", s.Target(now))
	for range 120 { // two minutes at 5 takes per second
		for i := range 5 {
			s.ObserveTake(now.Add(time.Duration(i) * 200 * time.Millisecond))
		}
		now = now.Add(time.Second)
	}
	fmt.Println("busy target:", s.Target(now))
	fmt.Println("after a quiet minute:", s.Target(now.Add(time.Minute)))
	// Output:
	// idle target: 1
	// busy target: 8
	// after a quiet minute: 1
}

// Fencing: a manager whose lease lapsed cannot claim the pod any more, even
// if it still believes it holds it.
func ExampleMemLeaseStore() {
	clock := faastest.NewClock(time.Time{}) // virtual time
	store := warmpool.NewMemLeaseStore(clock)
	ctx := context.Background()

	old, _ := store.Acquire(ctx, "pod-1", "dp-1", 10*time.Second)
	clock.Advance(11 * time.Second) // dp-1 paused; its lease lapsed
	newer, _ := store.Acquire(ctx, "pod-1", "dp-2", 10*time.Second)
	fmt.Println("tokens:", old.Token, newer.Token)

	fmt.Println("dp-1 claims:", store.Claim(ctx, old))
	fmt.Println("dp-2 claims:", store.Claim(ctx, newer))
	// Output:
	// tokens: 1 2
	// dp-1 claims: warmpool: claim "pod-1" with token 1: warmpool: lease lost
	// dp-2 claims: <nil>
}
