package lifecycle

import (
	"testing"
	"time"
)

var sinkState State

// BenchmarkState is the router's read of an instance's state.
func BenchmarkState(b *testing.B) {
	in := NewInstance(Info{ID: "i"}, t0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sinkState = in.State()
		}
	})
}

// BenchmarkTransition flaps an instance between Ready and Unhealthy with one
// observer: the cost of a health-check state change.
func BenchmarkTransition(b *testing.B) {
	in := NewInstance(Info{ID: "i"}, t0, ObserverFunc(func(*Instance, Transition) {}))
	for _, s := range []State{Loading, Loaded, Ready} {
		_ = in.Transition(t0, s, "")
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		to := Unhealthy
		if i%2 == 1 {
			to = Ready
		}
		if err := in.Transition(now, to, "flap"); err != nil {
			b.Fatal(err)
		}
	}
}
