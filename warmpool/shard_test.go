package warmpool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldBy returns the IDs of the pods m holds.
func heldBy(m *Manager) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for id := range m.held {
		out[id] = true
	}
	return out
}

func TestShardedHandoverOnJoinAndLeave(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 12, Max: 12}}
	cfg.MaxParallelCreates = 12
	m1 := e.manager(t, cfg)
	tick(t, m1)
	require.Len(t, heldBy(m1), 12)

	cfg2 := cfg
	cfg2.ID = "m2"
	cfg2.KeepIdleOnClose = true
	m2 := e.manager(t, cfg2)
	tick(t, m2) // joins; creates its own pods, named to hash to itself
	tick(t, m1) // sees m2 and releases the pods that now hash to it
	handed := m1.Stats().HandedOver
	assert.Positive(t, handed)
	tick(t, m2) // adopts them
	assert.Equal(t, handed, m2.Stats().Adopted)

	h1, h2 := heldBy(m1), heldBy(m2)
	for id := range h1 {
		assert.False(t, h2[id], "pod %s held by both", id)
	}
	for id := range h1 {
		n, _ := m1.table.Pick(id)
		assert.Equal(t, "m1", n.ID)
	}
	for id := range h2 {
		n, _ := m2.table.Pick(id)
		assert.Equal(t, "m2", n.ID)
	}
	pods, _ := e.prov.List(context.Background())
	assert.Len(t, pods, len(h1)+len(h2), "every pod is held by its owner")

	// m2 leaves gracefully, keeping its pods: m1 adopts them all at its
	// next round, then deletes the oldest beyond its Max.
	require.NoError(t, m2.Close())
	tick(t, m1)
	assert.EqualValues(t, len(h2), m1.Stats().Adopted)
	assert.Len(t, heldBy(m1), 12)
	pods, _ = e.prov.List(context.Background())
	assert.Len(t, pods, 12)
}

func TestShardedCrashedManagersPodsAreAdoptedAfterTheirLeasesLapse(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 6, Max: 6}}
	cfg.MaxParallelCreates = 6
	m1 := e.manager(t, cfg)
	cfg2 := cfg
	cfg2.ID = "m2"
	m2 := e.manager(t, cfg2)
	tick(t, m1)
	tick(t, m2)
	tick(t, m1)
	tick(t, m2)
	orphans := heldBy(m2)
	require.NotEmpty(t, orphans)
	// m2 crashes: it stops ticking. Until its leases lapse, m1 adopts none
	// of its pods.
	e.clock.Advance(10 * time.Second)
	tick(t, m1)
	for id := range orphans {
		assert.False(t, heldBy(m1)[id])
	}
	e.clock.Advance(5 * time.Second) // 15 s: the TTL since m2's last round
	tick(t, m1)
	for id := range orphans {
		assert.True(t, heldBy(m1)[id], "pod %s adopted", id)
	}
}

// A paused manager wakes up believing its leases are live; the store's
// fencing tokens refuse its Take of a pod another manager adopted.
func TestZombieManagerCannotHandOutAnAdoptedPod(t *testing.T) {
	e := newEnv(t)
	frozen := e.clock.Now()
	paused := false
	zombieNow := func() time.Time {
		if paused {
			return frozen
		}
		return e.clock.Now()
	}
	cfg := e.config("zombie")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 3, Max: 3}}
	cfg.Clock = funcClock(zombieNow)
	z := e.manager(t, cfg)
	tick(t, z)
	require.Len(t, heldBy(z), 3)
	frozen, paused = e.clock.Now(), true

	cfg2 := e.config("live")
	cfg2.Runtimes = cfg.Runtimes
	live := e.manager(t, cfg2)
	e.clock.Advance(16 * time.Second)
	tick(t, live)
	adopted := heldBy(live)
	for id := range heldBy(z) {
		require.True(t, adopted[id])
	}

	// The zombie hands out nothing it lost; the live manager hands out
	// each adopted pod once.
	taken := map[string]bool{}
	for {
		p, err := z.TryTake(context.Background(), "go", nil)
		if err != nil {
			require.ErrorIs(t, err, ErrNoIdlePod)
			break
		}
		taken[p.ID] = true
	}
	assert.Empty(t, taken)
	assert.EqualValues(t, 3, z.Stats().LeasesLost)
	for range 3 {
		p, err := live.TryTake(context.Background(), "go", nil)
		require.NoError(t, err)
		require.False(t, taken[p.ID])
		taken[p.ID] = true
	}
}

// listHookProvider runs a hook after taking the List snapshot, to play
// creations and takes that race with an upkeep round.
type listHookProvider struct {
	*testProvider
	hook func()
}

func (p *listHookProvider) List(ctx context.Context) ([]Pod, error) {
	pods, err := p.testProvider.List(ctx)
	if h := p.hook; h != nil {
		p.hook = nil
		h()
	}
	return pods, err
}

// A pod created, or taken, while the round lists the pods is missing from
// the list; the round must not take it for deleted.
func TestRebalanceKeepsPodsAddedDuringTheList(t *testing.T) {
	e := newEnv(t)
	prov := &listHookProvider{testProvider: e.prov}
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 0, Max: 5}}
	m := e.managerOf(t, prov, cfg)
	tick(t, m)
	var created, taken Pod
	prov.hook = func() {
		p := m.pools["go"]
		for range 2 {
			m.mu.Lock()
			p.creating++
			m.creatingTotal++
			m.mu.Unlock()
			m.create(p)
		}
		var err error
		taken, err = m.TryTake(context.Background(), "go", nil)
		require.NoError(t, err)
		created, err = m.TryTake(context.Background(), "go", nil) // taken as well, then put back below
		require.NoError(t, err)
		m.mu.Lock()
		c := m.claimed[created.ID]
		delete(m.claimed, created.ID)
		m.mu.Unlock()
		require.NoError(t, e.store.Release(context.Background(), c.lease))
		l, err := e.store.Acquire(context.Background(), created.ID, "m1", time.Minute)
		require.NoError(t, err)
		m.mu.Lock()
		m.restoreLocked(&entry{pod: created, lease: l, pool: p})
		m.mu.Unlock()
	}
	tick(t, m)
	assert.True(t, heldBy(m)[created.ID], "a pod created during the list stays in the pool")
	_, claimed, ok := e.store.Get(taken.ID)
	assert.True(t, ok && claimed, "a pod taken during the list keeps its claim")
	tick(t, m)
	_, claimed, ok = e.store.Get(taken.ID)
	assert.True(t, ok && claimed)
}

// TestRestartedManagerAdoptsItsPodsOnceTheOldLeasesLapse: a manager that
// restarts under the same ID (a node's name) gets back the same shard, but
// never the leases of the process it replaces: it takes over the old pods
// only once those leases have lapsed (meanwhile it creates its own).
func TestRestartedManagerAdoptsItsPodsOnceTheOldLeasesLapse(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("node-1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 2, Max: 2}}
	old := e.manager(t, cfg)
	tick(t, old)
	tick(t, old)
	oldPods := heldBy(old)
	require.Len(t, oldPods, 2)
	// The old process dies without a word: its leases stay until they lapse.

	restarted := e.manager(t, cfg)
	require.NotEqual(t, old.Holder(), restarted.Holder())
	tick(t, restarted)
	for id := range heldBy(restarted) {
		assert.False(t, oldPods[id], "pod %s taken over while the old incarnation's lease is live", id)
	}
	e.clock.Advance(cfg.LeaseTTL)
	tick(t, restarted)
	tick(t, restarted)
	live, err := e.prov.List(context.Background())
	require.NoError(t, err)
	exists := map[string]bool{}
	for _, p := range live {
		exists[p.ID] = true
	}
	held := heldBy(restarted)
	for id := range oldPods {
		assert.True(t, held[id] || !exists[id], "old pod %s adopted or deleted, not leaked", id)
	}
	assert.LessOrEqual(t, len(held), 2, "back within the pool's bounds")
}

// Two managers with private lease stores over one pod population could
// hand out the same pods: each refuses the other's pods and says why.
func TestPrivateLeasesRefuseAnotherManagersPods(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	private := func(id string, seed uint64) Config {
		cfg := e.config(id)
		cfg.Leases, cfg.Membership, cfg.Seed = nil, nil, seed
		return cfg
	}
	a := e.manager(t, private("dataplane", 1))
	require.NoError(t, a.Tick(ctx))
	require.Equal(t, 2, a.Stats().Runtimes["go"].Idle)

	// Same ID, as two Dataplanes with default config would have.
	b := e.manager(t, private("dataplane", 2))
	err := b.Tick(ctx)
	require.ErrorIs(t, err, ErrSharedPopulation)
	assert.Contains(t, err.Error(), a.Holder(), "the error names the other manager")
	assert.Equal(t, 2, b.Stats().ForeignPods)
	require.Equal(t, 2, b.Stats().Runtimes["go"].Idle, "b fills its pool with pods of its own")
	require.ErrorIs(t, a.Tick(ctx), ErrSharedPopulation, "and a sees them")

	seen := map[string]string{}
	for _, m := range []*Manager{a, b} {
		for {
			pod, err := m.TryTake(ctx, "go", nil)
			if errors.Is(err, ErrNoIdlePod) {
				break
			}
			require.NoError(t, err)
			require.Empty(t, seen[pod.ID], "pod %s handed out twice", pod.ID)
			seen[pod.ID] = m.Holder()
			assert.Equal(t, m.Holder(), pod.Labels[HolderLabel], "a manager hands out only its own pods")
		}
	}
	assert.Len(t, seen, 4)
}

// With a shared store and membership, pods of other managers are the
// normal case: no error.
func TestSharedLeasesAdoptOtherManagersPods(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a := e.manager(t, e.config("a"))
	require.NoError(t, a.Tick(ctx))
	b := e.manager(t, e.config("b"))
	require.NoError(t, b.Tick(ctx))
	require.NoError(t, a.Tick(ctx))
	assert.Zero(t, a.Stats().ForeignPods)
	assert.Zero(t, b.Stats().ForeignPods)
}

// A pod dedicated to a function (a steady instance) is never adopted into
// a pool, nor counted as another manager's.
func TestFunctionPodsAreNotAdopted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	cfg := e.config("a")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 0, Max: 5}}
	cfg.Sizing = func(_ string, rc RuntimeConfig) (SizingPolicy, error) { return FixedSizing(0), nil }
	m := e.manager(t, cfg)
	pod, err := e.prov.Create(ctx, PodSpec{Name: "steady-f-1", Runtime: "go",
		Labels: map[string]string{FunctionLabel: "f"}, Function: &FunctionPod{FunctionID: "f", Generation: 1}})
	require.NoError(t, err)
	require.NoError(t, m.Tick(ctx))
	require.NoError(t, m.Tick(ctx))
	st := m.Stats()
	assert.Zero(t, st.Adopted)
	assert.Zero(t, st.Runtimes["go"].Idle+st.Runtimes["go"].Pending)
	_, err = m.TryTake(ctx, "go", nil)
	require.ErrorIs(t, err, ErrNoIdlePod)
	_, _, held := e.store.Get(pod.ID)
	assert.False(t, held, "no lease taken on it")
}
