package router

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
)

var benchNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// benchRouter returns a router with policy p and, for function "fn", n Ready
// instances with a limit of 10, each already holding 0 to 8 requests (a
// seeded draw), so that utilizations differ as they do under load.
func benchRouter(tb testing.TB, p Policy, n int) *Router {
	tb.Helper()
	r, err := New(Config{Policy: p}, Hooks{})
	if err != nil {
		tb.Fatal(err)
	}
	addLoaded(tb, r, "fn", n, rand.New(rand.NewPCG(uint64(n), 7)))
	return r
}

func addLoaded(tb testing.TB, r *Router, fnID string, n int, rnd *rand.Rand) {
	tb.Helper()
	for i := range n {
		inst := readyInstance(tb, fnID, fmt.Sprintf("%s-%d", fnID, i), r)
		s := concurrency.NewSlots(concurrency.Shared, 10)
		for range rnd.IntN(9) {
			s.TryAcquire()
		}
		if err := r.Add(benchNow, inst, s, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

var benchPolicies = []Policy{P2C(), LeastUtilized(), RoundRobin(), Random(), FirstAvailable()}

// BenchmarkPickRelease measures one request's routing cost: Pick (lookup,
// policy, slot acquisition) and a successful Release.
func BenchmarkPickRelease(b *testing.B) {
	for _, p := range benchPolicies {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/instances=%d", p.Name(), n), func(b *testing.B) {
				r := benchRouter(b, p, n)
				b.ReportAllocs()
				for b.Loop() {
					rt, err := r.Pick("fn")
					if err != nil {
						b.Fatal(err)
					}
					rt.Release(benchNow, Success)
				}
			})
		}
	}
}

// tableSize holds the two routers of BenchmarkPickReleaseTableSize, built
// once and alive together, so that both sub-benchmarks run on the same heap
// and only the size of the table differs.
var tableSize struct {
	once    sync.Once
	routers map[int]*Router
	busy    []string
}

// BenchmarkPickReleaseTableSize shows that the cost of a pick does not
// depend on the number of functions: P2C over 100 instances of one of ten
// busy functions, in a table of 10 or of 100,000 functions (the others with
// one instance each). Each router's ten busy functions are picked in turn,
// so the working set is the same.
func BenchmarkPickReleaseTableSize(b *testing.B) {
	const all = 100_000
	tableSize.once.Do(func() {
		tableSize.routers = map[int]*Router{}
		rnd := rand.New(rand.NewPCG(1, 2))
		for i := range 10 {
			tableSize.busy = append(tableSize.busy, fmt.Sprintf("busy-function-%02d", i))
		}
		for _, total := range []int{10, all} {
			r, err := New(Config{}, Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			for _, fn := range tableSize.busy {
				addLoaded(b, r, fn, 100, rnd)
			}
			for i := range total - len(tableSize.busy) {
				addLoaded(b, r, fmt.Sprintf("idle-function-%06d", i), 1, rnd)
			}
			tableSize.routers[total] = r
		}
		// The setup left garbage (superseded snapshots); collect it now
		// so that no GC cycle runs during the measurements.
		runtime.GC()
	})
	for _, total := range []int{10, all} {
		b.Run(fmt.Sprintf("functions=%d", total), func(b *testing.B) {
			r, busy := tableSize.routers[total], tableSize.busy
			if got := r.Functions(); got != total {
				b.Fatalf("router holds %d functions, want %d", got, total)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rt, err := r.Pick(busy[i%len(busy)])
				if err != nil {
					b.Fatal(err)
				}
				rt.Release(benchNow, Success)
			}
		})
	}
}

// BenchmarkPickReleaseParallel runs pick+release from GOMAXPROCS goroutines
// on one function of 100 instances with limit 1000, so that slots never run
// out and the figure is the contention on the shared counters.
func BenchmarkPickReleaseParallel(b *testing.B) {
	for _, p := range benchPolicies {
		b.Run(p.Name()+"/instances=100", func(b *testing.B) {
			r, err := New(Config{Policy: p}, Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			for i := range 100 {
				inst := readyInstance(b, "fn", fmt.Sprintf("fn-%d", i), r)
				if err := r.Add(benchNow, inst, concurrency.NewSlots(concurrency.Shared, 1000), nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rt, err := r.Pick("fn")
					if err != nil {
						b.Error(err)
						return
					}
					rt.Release(benchNow, Success)
				}
			})
		})
	}
}

// BenchmarkPicker measures the policies alone, without the router: what a
// simulator pays per decision.
func BenchmarkPicker(b *testing.B) {
	for _, p := range benchPolicies {
		b.Run(p.Name()+"/instances=100", func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(3, 4))
			cands := make([]Candidate, 100)
			for i := range cands {
				s := concurrency.NewSlots(concurrency.Shared, 10)
				for range rnd.IntN(9) {
					s.TryAcquire()
				}
				cands[i] = Candidate{Slots: s}
			}
			pk := p.NewPicker(cands)
			src := rand.NewPCG(5, 6)
			b.ReportAllocs()
			for b.Loop() {
				if pk.Pick(src) < 0 {
					b.Fatal("no candidate")
				}
			}
		})
	}
}

// BenchmarkCapacity measures the cold-start decision's read of a
// function's routable instances and free slots.
func BenchmarkCapacity(b *testing.B) {
	r := benchRouter(b, P2C(), 100)
	b.ReportAllocs()
	for b.Loop() {
		if routable, _ := r.Capacity("fn"); routable != 100 {
			b.Fatal(routable)
		}
	}
}

// BenchmarkAcquireRelease measures taking a slot on a given instance (the
// last of 100, the worst case of the scan) and releasing it.
func BenchmarkAcquireRelease(b *testing.B) {
	r := benchRouter(b, P2C(), 100)
	last := r.Routes("fn")[99].Instance
	b.ReportAllocs()
	for b.Loop() {
		rt, err := r.acquireInstance(last)
		if err != nil {
			b.Fatal(err)
		}
		rt.Release(benchNow, Success)
	}
}

// readyInstance returns an instance of fnID in state Ready whose
// transitions r observes.
func readyInstance(tb testing.TB, fnID, id string, r *Router) *lifecycle.Instance {
	tb.Helper()
	var obs []lifecycle.Observer
	if r != nil {
		obs = append(obs, r)
	}
	inst := lifecycle.NewInstance(lifecycle.Info{ID: id, FunctionID: fnID, Addr: "127.0.0.1:1"}, benchNow, obs...)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		if err := inst.Transition(benchNow, s, "test"); err != nil {
			tb.Fatal(err)
		}
	}
	return inst
}
