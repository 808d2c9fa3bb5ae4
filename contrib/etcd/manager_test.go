package etcd_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/require"
)

// pods is a pod population in memory shared by the managers under test,
// and their prober: a pod handed out is an instance with a function
// loaded (ErrNotIdle), as its agent would answer, so that a manager
// adopting a dead manager's instance deletes it instead of handing it out
// again.
type pods struct {
	mu     sync.Mutex
	pods   map[string]warmpool.Pod
	loaded map[string]bool
}

func newPods() *pods {
	return &pods{pods: map[string]warmpool.Pod{}, loaded: map[string]bool{}}
}

func (p *pods) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	if err := ctx.Err(); err != nil {
		return warmpool.Pod{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pods[spec.Name]; ok || spec.Name == "" {
		return warmpool.Pod{}, fmt.Errorf("create %q: %w", spec.Name, warmpool.ErrPodExists)
	}
	pod := warmpool.Pod{ID: spec.Name, Node: "n1", Addr: spec.Name + ".invalid:8080", Runtime: spec.Runtime, Labels: maps.Clone(spec.Labels), Created: time.Now()}
	p.pods[pod.ID] = pod
	return pod, nil
}

func (p *pods) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.pods[id]; !ok {
		return fmt.Errorf("delete %q: %w", id, warmpool.ErrPodNotFound)
	}
	delete(p.pods, id)
	return nil
}

func (p *pods) List(ctx context.Context) ([]warmpool.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]warmpool.Pod, 0, len(p.pods))
	for _, id := range slices.Sorted(maps.Keys(p.pods)) {
		out = append(out, p.pods[id].Clone())
	}
	return out, nil
}

func (p *pods) load(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loaded[id] = true
}

func (p *pods) Probe(ctx context.Context, pod warmpool.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch _, ok := p.pods[pod.ID]; {
	case !ok:
		return fmt.Errorf("probe %s: %w", pod.ID, warmpool.ErrPodNotFound)
	case p.loaded[pod.ID]:
		return fmt.Errorf("probe %s: %w", pod.ID, warmpool.ErrNotIdle)
	}
	return nil
}

// stoppingClock is the system clock until stop, then stands still: the
// clock of a process that is paused (or dead, and not told so).
type stoppingClock struct {
	clock.Clock
	mu      sync.Mutex
	stopped bool
	at      time.Time
}

func (c *stoppingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.at = c.Clock.Now()
	}
	return c.at
}

func (c *stoppingClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.stopped = c.Clock.Now(), true
}

// Two managers of two processes (two stores on two clients) share one pod
// population through etcd, under random takes, deletions and upkeep
// rounds; then one is killed (it stops its rounds, and its clock stops, so
// that it believes its leases valid, as a paused process would) and keeps
// trying to hand out pods. Across the run no pod is handed out twice: the
// dead manager's claims are refused by etcd once its leases lapsed, the
// survivor adopts its idle pods and deletes its orphaned instances.
func TestManagersShareOnePopulationAcrossAKill(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runManagers(t, seed) })
	}
}

func runManagers(t *testing.T, seed uint64) {
	srv := etcdtest.Start(t)
	ctx := ctxOf(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	prov := newPods()
	const ttl = time.Second
	aClock := &stoppingClock{Clock: clock.System()}
	newManager := func(id string, c clock.Clock, seed uint64) (*warmpool.Manager, *etcd.Store) {
		s := newStore(t, srv.Client(t), etcd.Config{Clock: c})
		m, err := warmpool.New(prov, warmpool.Config{
			ID: id, Runtimes: map[string]warmpool.RuntimeConfig{"py": {Min: 3, Max: 4}},
			Leases: s, Membership: s, LeaseTTL: ttl, RenewInterval: ttl / 4,
			Prober: prov, ProbeInterval: time.Hour, Manual: true, Clock: c, Seed: seed,
		})
		require.NoError(t, err)
		return m, s
	}
	// a is never closed: it dies. (A Manual manager runs no goroutine.)
	a, _ := newManager("a", aClock, 2*seed)
	b, bStore := newManager("b", clock.System(), 2*seed+1) // seeds differ, or so would pod names
	defer func() { require.NoError(t, b.Close()) }()

	handed := map[string]string{} // pod → manager that handed it out
	var taken []warmpool.Pod      // handed out and not yet deleted
	owner := map[string]*warmpool.Manager{}
	take := func(name string, m *warmpool.Manager) error {
		pod, err := m.TryTake(ctx, "py", nil)
		if err != nil {
			return err
		}
		if prev, twice := handed[pod.ID]; twice {
			t.Fatalf("pod %s handed out by %s, and before by %s", pod.ID, name, prev)
		}
		handed[pod.ID] = name
		prov.load(pod.ID)
		taken = append(taken, pod)
		owner[pod.ID] = m
		return nil
	}
	tickA := func() { require.NoError(t, a.Tick(ctx)) }
	tickA()
	require.NoError(t, b.Tick(ctx))
	tickA()
	require.Len(t, b.Members(), 2, "both managers are members")

	for range 150 {
		switch r := rng.IntN(10); {
		case r < 2:
			tickA()
		case r < 4:
			require.NoError(t, b.Tick(ctx))
		case r < 8:
			name, m := "a", a
			if r >= 6 {
				name, m = "b", b
			}
			if err := take(name, m); err != nil {
				require.ErrorIs(t, err, warmpool.ErrNoIdlePod)
			}
		case len(taken) > 0:
			i := rng.IntN(len(taken))
			pod := taken[i]
			taken = append(taken[:i], taken[i+1:]...)
			require.NoError(t, owner[pod.ID].Delete(ctx, pod))
		}
	}
	tickA() // A dies with idle pods in its pools
	idle := a.Stats().Runtimes["py"].Idle
	require.Positive(t, idle, "a has idle pods when it dies")
	require.NotEmpty(t, handed, "the run handed out pods")

	// A's clock stops: its leases look valid to it forever. B goes on
	// until A's leases lapsed in etcd.
	aClock.stop()
	heldByA := func() int {
		entries, err := bStore.Leases(ctx)
		require.NoError(t, err)
		n := 0
		for _, e := range entries {
			if e.Holder == a.Holder() {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool {
		require.NoError(t, b.Tick(ctx))
		if err := take("b", b); err != nil {
			require.ErrorIs(t, err, warmpool.ErrNoIdlePod)
		}
		return heldByA() == 0 && len(b.Members()) == 1
	}, 15*time.Second, 20*time.Millisecond, "a's leases and membership lapse")
	// The dead manager wakes up and hands out what it believes it holds:
	// etcd refuses every stale claim.
	require.ErrorIs(t, take("a (dead)", a), warmpool.ErrNoIdlePod)
	require.Equal(t, int64(idle), a.Stats().LeasesLost, "each of the dead manager's claims was refused")
	require.Eventually(t, func() bool {
		require.NoError(t, b.Tick(ctx))
		if err := take("b", b); err != nil {
			require.ErrorIs(t, err, warmpool.ErrNoIdlePod)
		}
		return b.Stats().Adopted > 0
	}, 15*time.Second, 20*time.Millisecond, "b adopts the dead manager's pods")
	for range 5 {
		require.NoError(t, b.Tick(ctx))
		if err := take("b", b); err != nil {
			require.ErrorIs(t, err, warmpool.ErrNoIdlePod)
		}
	}
	st := b.Stats()
	require.Zero(t, st.Runtimes["py"].CreateFailures, "%+v", st)
	t.Logf("%d pods handed out; b: %+v", len(handed), st)
}
