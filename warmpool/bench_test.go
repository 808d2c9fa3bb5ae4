package warmpool

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkTake measures Take of an idle pod: pick among 64 idle pods with
// a preference, claim in the in-memory lease store, sizing observation. The
// pool is refilled outside the timer.
func BenchmarkTake(b *testing.B) {
	clock := newWPClock()
	sp, _ := newStaticProvider(staticConfig{Nodes: []string{"n1", "n2", "n3", "n4"}, Now: clock.Now})
	const pool = 64
	m, err := New(sp, Config{
		Runtimes:           map[string]RuntimeConfig{"go": {Min: pool, Max: pool}},
		Sizing:             func(string, RuntimeConfig) (SizingPolicy, error) { return FixedSizing(pool), nil },
		MaxParallelCreates: pool,
		ProbeInterval:      -1,
		Manual:             true,
		Clock:              clock,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	pref := func(p Pod) int {
		if p.Node == "n3" {
			return 1
		}
		return 0
	}
	taken := make([]Pod, 0, pool)
	refill := func() {
		for _, p := range taken {
			if err := m.Delete(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		taken = taken[:0]
		if err := m.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	refill()
	b.ReportAllocs()
	for b.Loop() {
		if len(taken) == pool {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		p, err := m.TryTake(ctx, "go", pref)
		if err != nil {
			b.Fatal(err)
		}
		taken = append(taken, p)
	}
}

// BenchmarkMemLeaseStoreRenew measures one batch renewal of n leases.
func BenchmarkMemLeaseStoreRenew(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("leases=", n), func(b *testing.B) {
			clock := newWPClock()
			s := NewMemLeaseStore(clock)
			ctx := context.Background()
			leases := make([]Lease, n)
			for i := range leases {
				l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "m", time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				leases[i] = l
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Renew(ctx, leases, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/lease")
		})
	}
}

// BenchmarkTick measures an upkeep round of a manager holding 100 idle
// pods among 300 (heartbeat, membership, batch renewal, list, ownership of
// every pod, sizing), with nothing to create or probe.
func BenchmarkTick(b *testing.B) {
	clock := newWPClock()
	store := NewMemLeaseStore(clock)
	sp, _ := newStaticProvider(staticConfig{Now: clock.Now})
	var mgrs []*Manager
	for _, id := range []string{"a", "b", "c"} {
		m, err := New(sp, Config{
			ID: id, Leases: store, Membership: store,
			Runtimes:           map[string]RuntimeConfig{"go": {Min: 100, Max: 100}},
			Sizing:             func(string, RuntimeConfig) (SizingPolicy, error) { return FixedSizing(100), nil },
			MaxParallelCreates: 100, ProbeInterval: -1, Manual: true, Clock: clock,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		mgrs = append(mgrs, m)
	}
	ctx := context.Background()
	for range 2 {
		for _, m := range mgrs {
			if err := m.Tick(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := mgrs[0].Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
