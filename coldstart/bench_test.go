package coldstart

import (
	"context"
	"testing"

	"github.com/faasplane/faas/faastest"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// benchPool hands out the same pod at once: zero latency, no allocation.
type benchPool struct{ pod warmpool.Pod }

func (p *benchPool) Take(context.Context, string, warmpool.Preference) (warmpool.Pod, error) {
	return p.pod, nil
}
func (p *benchPool) Delete(context.Context, warmpool.Pod) error { return nil }

// benchAgent answers at once.
type benchAgent struct{}

func (benchAgent) Load(_ context.Context, _ lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error) {
	return lifecycle.LoadResponse{FunctionID: req.FunctionID}, nil
}

func (benchAgent) Initialize(_ context.Context, _ lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error) {
	return lifecycle.InitializeResponse{FunctionID: req.FunctionID, Attempts: 1}, nil
}

var benchPod = warmpool.Pod{ID: "pod-1", Node: "n1", Addr: "127.0.0.1:9", Runtime: "go"}

// BenchmarkStart measures the Starter's own overhead for one cold start
// with a pool and an agent that answer at once: validation, the global
// semaphore, three timeouts, the instance and its four transitions, the
// breakdown and its report (target ≤ 30 µs).
func BenchmarkStart(b *testing.B) {
	s, err := New(&benchPool{benchPod}, benchAgent{}, Config{}, Hooks{OnColdStart: func(Report) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fn := testFunction("orders/resize")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Start(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnsure is BenchmarkStart through Ensure: the cold start runs in
// its own goroutine and the caller waits for it.
func BenchmarkEnsure(b *testing.B) {
	s, err := New(&benchPool{benchPod}, benchAgent{}, Config{}, Hooks{OnColdStart: func(Report) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fn := testFunction("orders/resize")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Ensure(ctx, fn, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartFromWarmPool is BenchmarkStart with a real warmpool.Manager
// (in-memory provider and lease store) handing out the pods, with a
// locality preference; the pool is refilled outside the timer.
func BenchmarkStartFromWarmPool(b *testing.B) {
	provider := faastest.NewPodProvider(faastest.PodProviderConfig{Nodes: []string{"n1", "n2", "n3", "n4"}})
	const size = 64
	m, err := warmpool.New(provider, warmpool.Config{
		Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: size, Max: size}},
		Sizing: func(string, warmpool.RuntimeConfig) (warmpool.SizingPolicy, error) {
			return warmpool.FixedSizing(size), nil
		},
		MaxParallelCreates: size,
		ProbeInterval:      -1,
		Manual:             true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	fn := testFunction("orders/resize")
	s, err := New(m, benchAgent{}, Config{Locality: LocalityFunc(func(node, _ string) bool { return node == "n3" })},
		Hooks{OnColdStart: func(Report) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var taken []warmpool.Pod
	refill := func() {
		for _, p := range taken {
			_ = m.Delete(ctx, p)
		}
		taken = taken[:0]
		if err := m.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	refill()
	b.ReportAllocs()
	for b.Loop() {
		if len(taken) == size {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		res, err := s.Start(ctx, fn)
		if err != nil {
			b.Fatal(err)
		}
		taken = append(taken, res.Pod)
	}
}
