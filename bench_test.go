package faas

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/faasplane/faas/faastest"

	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// newRoutedDataplane builds a Dataplane that is not started (no pools, no
// processes) with nfuncs functions deployed and `instances` Ready instances
// of function "hot" in its routes: the in-process hot path, isolated.
func newRoutedDataplane(tb testing.TB, nfuncs, instances int, edit func(*Config)) *Dataplane {
	tb.Helper()
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("a function package"))
	ref.URI = "fake://hot"
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{})
	cfg := Config{Pods: pods, Code: store}
	if edit != nil {
		edit(&cfg)
	}
	d, err := New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	spec := FunctionSpec{ID: "hot", Runtime: "go", Code: ref, Concurrency: 1000}
	require.NoError(tb, d.Deploy(ctx, spec))
	for i := range nfuncs - 1 {
		s := spec
		s.ID = fmt.Sprintf("fn-%06d", i)
		require.NoError(tb, d.Deploy(ctx, s))
	}
	now := time.Now()
	for i := range instances {
		addReadyInstance(tb, d, "hot", fmt.Sprintf("i-%d", i), now)
	}
	return d
}

// addReadyInstance puts a Ready instance into fn's routes as a cold start
// would.
func addReadyInstance(tb testing.TB, d *Dataplane, fnID, id string, now time.Time) *lifecycle.Instance {
	tb.Helper()
	fn := d.lookup(fnID)
	v := fn.version()
	inst := lifecycle.NewInstance(lifecycle.Info{ID: id, FunctionID: fnID, PodID: "pod-" + id, Addr: "127.0.0.1:1", Generation: v.gen}, now)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(tb, inst.Transition(now, s, "test"))
	}
	slots := concurrency.NewSlots(v.spec.Mode, v.spec.Concurrency)
	fn.mu.Lock()
	fn.instances[id] = &instance{inst: inst, slots: slots, gen: v.gen}
	fn.mu.Unlock()
	require.NoError(tb, d.router.Add(now, inst, slots, fn.queue))
	return inst
}

// BenchmarkHotPath is the in-process hot path of one invocation without the
// network: function lookup, load-shedder admission, function-wide limit,
// pick + acquire of a slot on one of 100 instances, and the release of all
// of them. Time advances by 1 µs per operation so that the shedder's
// control steps run as they would.
func BenchmarkHotPath(b *testing.B) {
	// Both dataplanes live through both runs, so that they share one heap
	// and only the number of functions differs.
	sizes := []int{1, 100_000}
	planes := make([]*Dataplane, len(sizes))
	for i, nf := range sizes {
		planes[i] = newRoutedDataplane(b, nf, 100, nil)
	}
	runtime.GC() // the setup's garbage must not be collected on the clock
	for i, nf := range sizes {
		d := planes[i]
		b.Run(fmt.Sprintf("functions=%d/instances=100", nf), func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				fn := d.lookup("hot")
				l, err := admitCall(d, ctx, fn, "caller", loadshed.Default, now)
				if err != nil {
					b.Fatal(err)
				}
				l.end(now, router.Success)
			}
		})
	}
}

// BenchmarkHotPathParallel runs the hot path from every P at once.
func BenchmarkHotPathParallel(b *testing.B) {
	d := newRoutedDataplane(b, 1, 100, nil)
	ctx := context.Background()
	start := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		now := start
		for pb.Next() {
			now = now.Add(time.Microsecond)
			fn := d.lookup("hot")
			l, err := admitCall(d, ctx, fn, "caller", loadshed.Default, now)
			if err != nil {
				b.Error(err)
				return
			}
			l.end(now, router.Success)
		}
	})
}
