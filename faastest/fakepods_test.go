package faastest

import (
	"context"
	"testing"
	"time"

	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPodProviderLatencyOnFakeClock(t *testing.T) {
	clk := NewClock(Epoch)
	p := NewPodProvider(PodProviderConfig{Nodes: []string{"n1", "n2"}, Latency: Const(2 * time.Second), Clock: clk})
	ctx := context.Background()
	type result struct {
		pod warmpool.Pod
		err error
	}
	res := make(chan result)
	create := func(name string) {
		pod, err := p.Create(ctx, warmpool.PodSpec{Name: name, Runtime: "go", Labels: map[string]string{"a": "b"}})
		res <- result{pod, err}
	}
	go create("a")
	go create("b")
	require.NoError(t, clk.BlockUntil(ctx, 2))
	clk.Advance(time.Second)
	select {
	case <-res:
		t.Fatal("created before its latency")
	default:
	}
	clk.Advance(time.Second)
	got := map[string]warmpool.Pod{}
	for range 2 {
		r := <-res
		require.NoError(t, r.err)
		got[r.pod.ID] = r.pod
	}
	assert.ElementsMatch(t, []string{"n1", "n2"}, []string{got["a"].Node, got["b"].Node}, "round robin over the nodes")
	assert.Equal(t, Epoch.Add(2*time.Second), got["a"].Created)
	assert.Equal(t, "a.invalid:8080", got["a"].Addr)
	assert.Equal(t, "b", got["a"].Labels["a"])

	list, err := p.List(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 2)
	_, err = p.Create(ctx, warmpool.PodSpec{Name: "a", Runtime: "go"})
	assert.ErrorIs(t, err, warmpool.ErrPodExists, "a taken name, refused at once")

	// A creation whose context ends leaves no pod.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := p.Create(cctx, warmpool.PodSpec{Runtime: "go"})
		res <- result{err: err}
	}()
	require.NoError(t, clk.BlockUntil(ctx, 1))
	cancel()
	assert.ErrorIs(t, (<-res).err, context.Canceled)
	assert.Equal(t, PodStats{Created: 2, Live: 2}, p.Stats())
}

func TestPodProviderFailuresAndPlacement(t *testing.T) {
	ctx := context.Background()
	p := NewPodProvider(PodProviderConfig{Place: func(s warmpool.PodSpec, n int) string { return s.Runtime + "-node" }})
	p.FailNext(2)
	for range 2 {
		_, err := p.Create(ctx, warmpool.PodSpec{Runtime: "py"})
		assert.ErrorIs(t, err, ErrInjected)
	}
	pod, err := p.Create(ctx, warmpool.PodSpec{Runtime: "py"})
	require.NoError(t, err)
	assert.Equal(t, "py-node", pod.Node)
	assert.Equal(t, "pod-2", pod.ID, "named by the creation's number")
	_, err = p.Create(ctx, warmpool.PodSpec{})
	assert.Error(t, err, "no runtime")

	flaky := NewPodProvider(PodProviderConfig{FailRate: 0.3, Seed: 9})
	fails := 0
	for range 1000 {
		if _, err := flaky.Create(ctx, warmpool.PodSpec{Runtime: "go"}); err != nil {
			require.ErrorIs(t, err, ErrInjected)
			fails++
		}
	}
	assert.InDelta(t, 300, fails, 60)
	assert.Equal(t, PodStats{Created: 1000 - fails, Failed: fails, Live: 1000 - fails}, flaky.Stats())
}

func TestPodProviderCrash(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewPodProvider(PodProviderConfig{})
	events, err := p.Watch(ctx)
	require.NoError(t, err)
	a, err := p.Create(ctx, warmpool.PodSpec{Name: "a", Runtime: "go"})
	require.NoError(t, err)
	assert.Equal(t, warmpool.PodEvent{Type: warmpool.PodAdded, Pod: a}, <-events)
	require.NoError(t, p.Probe(ctx, a), "a live pod is a generic pod")

	require.NoError(t, p.Crash("a"))
	ev := <-events
	assert.Equal(t, warmpool.PodDeleted, ev.Type)
	assert.Equal(t, "a", ev.Pod.ID)
	assert.ErrorIs(t, p.Probe(ctx, a), ErrInjected, "its probe fails")
	assert.ErrorIs(t, p.Delete(ctx, "a"), warmpool.ErrPodNotFound, "it is gone")
	assert.ErrorIs(t, p.Crash("a"), warmpool.ErrPodNotFound)
	assert.ErrorIs(t, p.Probe(ctx, warmpool.Pod{ID: "x"}), warmpool.ErrPodNotFound)
	assert.Equal(t, PodStats{Created: 1, Crashed: 1}, p.Stats())

	require.NoError(t, p.Add(warmpool.Pod{ID: "b", Addr: "b:1", Runtime: "go"}))
	_, ok := p.Get("b")
	assert.True(t, ok)
	require.NoError(t, p.Delete(ctx, "b"))
	assert.Equal(t, 1, p.Stats().Deleted)
}

// TestFakesDriveTheWarmPoolManager shows the fakes in the role they have in
// the project's tests: a real warmpool.Manager, run round by round on a
// fake clock, over the fake provider (also its prober) and lease store.
func TestFakesDriveTheWarmPoolManager(t *testing.T) {
	ctx := context.Background()
	clk := NewClock(Epoch)
	pods := NewPodProvider(PodProviderConfig{Nodes: []string{"n1", "n2"}, Clock: clk})
	leases := NewLeaseStore(clk)
	m, err := warmpool.New(pods, warmpool.Config{
		ID: "m1", Prober: pods, Leases: leases, Manual: true, Clock: clk, Seed: 1,
		Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}},
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, m.Close()) }()

	require.NoError(t, m.Tick(ctx))
	require.Equal(t, 2, m.Stats().Runtimes["go"].Idle)
	pod, err := m.TryTake(ctx, "go", func(p warmpool.Pod) int {
		if p.Node == "n2" {
			return 1
		}
		return 0
	})
	require.NoError(t, err)
	assert.Equal(t, "n2", pod.Node, "the preference was honoured")
	_, claimed, ok := leases.Get(pod.ID)
	assert.True(t, ok && claimed, "the taken pod is claimed in the lease store")

	// Crash the other idle pod: it leaves the provider's list, the next
	// round drops it from the pool and creates a replacement.
	require.NoError(t, m.Tick(ctx)) // refill after the take
	list, err := pods.List(ctx)
	require.NoError(t, err)
	var victim string
	for _, p := range list {
		if p.ID != pod.ID {
			victim = p.ID
			break
		}
	}
	require.NoError(t, pods.Crash(victim))
	clk.Advance(5 * time.Second)
	require.NoError(t, m.Tick(ctx))
	st := m.Stats().Runtimes["go"]
	assert.Equal(t, int64(4), st.Created, "two, one after the take, one after the crash")
	assert.Equal(t, 2, st.Idle, "refilled to its minimum")
	next, err := m.TryTake(ctx, "go", nil)
	require.NoError(t, err)
	assert.NotEqual(t, victim, next.ID, "the crashed pod is never handed out")

	// An idle pod whose lease expires (as if this manager had paused past
	// its TTL) is lost, then adopted back by its only possible owner.
	require.NoError(t, m.Tick(ctx))
	list, err = pods.List(ctx)
	require.NoError(t, err)
	expired := 0
	for _, p := range list {
		if _, claimed, ok := leases.Get(p.ID); ok && !claimed && leases.Expire(p.ID) {
			expired++
		}
	}
	require.Equal(t, 2, expired)
	clk.Advance(5 * time.Second)
	require.NoError(t, m.Tick(ctx))
	require.NoError(t, m.Tick(ctx))
	ms := m.Stats()
	assert.EqualValues(t, 2, ms.LeasesLost)
	assert.Equal(t, 2, ms.Runtimes["go"].Idle+ms.Runtimes["go"].Pending, "the pods are back (adopted, maybe awaiting a probe)")
}
