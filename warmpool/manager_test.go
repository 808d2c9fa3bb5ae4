package warmpool

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testProvider wraps a StaticProvider with failure injection and counters.
type testProvider struct {
	*staticProvider
	mu        sync.Mutex
	createErr error
	creates   int
	deleted   []string
	gate      chan struct{} // when set, Create waits on it
}

func (p *testProvider) Create(ctx context.Context, spec PodSpec) (Pod, error) {
	p.mu.Lock()
	p.creates++
	err, gate := p.createErr, p.gate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Pod{}, ctx.Err()
		}
	}
	if err != nil {
		return Pod{}, err
	}
	return p.staticProvider.Create(ctx, spec)
}

func (p *testProvider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	p.deleted = append(p.deleted, id)
	p.mu.Unlock()
	return p.staticProvider.Delete(ctx, id)
}

func (p *testProvider) set(f func(p *testProvider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *testProvider) counts() (creates int, deleted []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.creates, append([]string(nil), p.deleted...)
}

// testProber fails the pods marked dead (or reports them specialized).
type testProber struct {
	mu     sync.Mutex
	dead   map[string]error
	probes int
}

func (p *testProber) Probe(_ context.Context, pod Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	return p.dead[pod.ID]
}

func (p *testProber) kill(id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead == nil {
		p.dead = map[string]error{}
	}
	p.dead[id] = err
}

type env struct {
	clock  *wpClock
	prov   *testProvider
	store  *MemLeaseStore
	prober *testProber
	health sync.Map // node → false when unhealthy
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := newWPClock()
	sp, err := newStaticProvider(staticConfig{Nodes: []string{"n1", "n2"}, Now: clock.Now})
	require.NoError(t, err)
	return &env{clock: clock, prov: &testProvider{staticProvider: sp}, store: NewMemLeaseStore(clock), prober: &testProber{}}
}

func (e *env) config(id string) Config {
	return Config{
		ID:            id,
		Runtimes:      map[string]RuntimeConfig{"go": {Min: 2, Max: 5}},
		Sizing:        func(_ string, rc RuntimeConfig) (SizingPolicy, error) { return FixedSizing(rc.Min), nil },
		Prober:        e.prober,
		ProbeInterval: 10 * time.Second,
		NodeHealth: NodeHealthFunc(func(n string) bool {
			v, ok := e.health.Load(n)
			return !ok || v.(bool)
		}),
		Leases:        e.store,
		Membership:    e.store,
		LeaseTTL:      15 * time.Second,
		RenewInterval: 5 * time.Second,
		Manual:        true,
		Clock:         e.clock,
		Seed:          1,
		Backoff:       Backoff{Base: time.Second, Max: 8 * time.Second},
	}
}

func (e *env) manager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	return e.managerOf(t, e.prov, cfg)
}

func (e *env) managerOf(t *testing.T, prov PodProvider, cfg Config) *Manager {
	t.Helper()
	m, err := New(prov, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func tick(t *testing.T, m *Manager) {
	t.Helper()
	require.NoError(t, m.Tick(context.Background()))
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		mod  func(c *Config)
	}{
		{"no runtimes", func(c *Config) { c.Runtimes = nil }},
		{"empty runtime", func(c *Config) { c.Runtimes = map[string]RuntimeConfig{"": {Max: 1}} }},
		{"max 0", func(c *Config) { c.Runtimes = map[string]RuntimeConfig{"go": {}} }},
		{"min > max", func(c *Config) { c.Runtimes = map[string]RuntimeConfig{"go": {Min: 3, Max: 2}} }},
		{"renew >= ttl", func(c *Config) { c.RenewInterval = c.LeaseTTL }},
		{"negative ttl", func(c *Config) { c.LeaseTTL = -1 }},
		{"negative creates", func(c *Config) { c.MaxParallelCreates = -1 }},
		{"bad backoff", func(c *Config) { c.Backoff = Backoff{Base: time.Second, Max: time.Millisecond} }},
		{"sizing error", func(c *Config) {
			c.Sizing = func(string, RuntimeConfig) (SizingPolicy, error) { return nil, errors.New("no") }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config("m")
			tt.mod(&cfg)
			m, err := New(e.prov, cfg)
			require.Error(t, err)
			assert.Nil(t, m)
		})
	}
	m, err := New(nil, e.config("m"))
	require.ErrorContains(t, err, "PodProvider is required")
	assert.Nil(t, m)
}

func TestTickFillsThePoolAndTakeIsImmediate(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, e.config("m1"))
	tick(t, m)
	s := m.Stats().Runtimes["go"]
	assert.Equal(t, 2, s.Idle)
	assert.Equal(t, 2, s.Target)
	assert.EqualValues(t, 2, s.Created)
	assert.Equal(t, 2, e.prov.Len())

	pod, err := m.TryTake(context.Background(), "go", nil)
	require.NoError(t, err)
	assert.Equal(t, "go", pod.Runtime)
	l, claimed, ok := e.store.Get(pod.ID)
	require.True(t, ok)
	assert.True(t, claimed, "a taken pod is claimed in the store")
	assert.Equal(t, m.Holder(), l.Holder)
	assert.True(t, strings.HasPrefix(l.Holder, "m1-"), "held in the name of an incarnation of m1")
	assert.Equal(t, 1, m.Stats().Runtimes["go"].Idle)

	// The taken pod never comes back, even after rounds.
	tick(t, m)
	tick(t, m)
	seen := map[string]bool{pod.ID: true}
	for range 2 {
		p, err := m.TryTake(context.Background(), "go", nil)
		require.NoError(t, err)
		require.False(t, seen[p.ID])
		seen[p.ID] = true
	}
	_, err = m.TryTake(context.Background(), "go", nil)
	require.ErrorIs(t, err, ErrNoIdlePod)
	_, err = m.TryTake(context.Background(), "java", nil)
	require.ErrorIs(t, err, ErrUnknownRuntime)
}

func TestTakeWaitsForACreation(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 0, Max: 5}}
	m := e.manager(t, cfg)
	tick(t, m)
	assert.Zero(t, e.prov.Len())

	got := make(chan error, 1)
	go func() {
		_, err := m.Take(context.Background(), "go", nil)
		got <- err
	}()
	require.Eventually(t, func() bool { return m.Stats().Runtimes["go"].Waiting == 1 }, 10*time.Second, time.Millisecond)
	tick(t, m) // the waiting Take counts in the deficit
	require.NoError(t, <-got)
	assert.Zero(t, m.Stats().Runtimes["go"].Waiting)
	assert.Zero(t, m.Stats().Runtimes["go"].Idle)
}

func TestTakeWaitIsBoundedByItsContext(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 0, Max: 5}}
	m := e.manager(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := m.Take(ctx, "go", nil)
		got <- err
	}()
	require.Eventually(t, func() bool { return m.Stats().Runtimes["go"].Waiting == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-got, context.Canceled)
	assert.Zero(t, m.Stats().Runtimes["go"].Waiting)
	// The pod created for nobody stays in the pool.
	cfg2 := m.Stats()
	assert.Zero(t, cfg2.Runtimes["go"].Idle)
}

func TestTakePrefersAndAvoidsUnhealthyNodes(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 4, Max: 5}}
	m := e.manager(t, cfg)
	tick(t, m)
	prefer := func(node string) Preference {
		return func(p Pod) int {
			if p.Node == node {
				return 1
			}
			return 0
		}
	}
	p, err := m.TryTake(context.Background(), "go", prefer("n1"))
	require.NoError(t, err)
	assert.Equal(t, "n1", p.Node)
	p, err = m.TryTake(context.Background(), "go", prefer("n2"))
	require.NoError(t, err)
	assert.Equal(t, "n2", p.Node)

	e.health.Store("n1", false)
	for range 3 {
		// The remaining n1 pod is never handed out, however preferred.
		p, err := m.TryTake(context.Background(), "go", prefer("n1"))
		if errors.Is(err, ErrNoIdlePod) {
			break
		}
		require.NoError(t, err)
		assert.Equal(t, "n2", p.Node)
	}
	_, err = m.TryTake(context.Background(), "go", nil)
	require.ErrorIs(t, err, ErrNoIdlePod)
	// The replenishment does not count the unusable pod as available.
	tick(t, m)
	p, err = m.TryTake(context.Background(), "go", nil)
	require.NoError(t, err)
	assert.Equal(t, "n2", p.Node)
}

func TestCreationFailuresBackOff(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.MaxParallelCreates = 1
	m := e.manager(t, cfg)
	boom := errors.New("quota exceeded")
	e.prov.set(func(p *testProvider) { p.createErr = boom })

	tick(t, m)
	creates, _ := e.prov.counts()
	assert.Equal(t, 1, creates)
	assert.EqualValues(t, 1, m.Stats().Runtimes["go"].CreateFailures)

	// Within the first backoff (0.5 to 1 s) nothing is retried.
	e.clock.Advance(400 * time.Millisecond)
	tick(t, m)
	creates, _ = e.prov.counts()
	assert.Equal(t, 1, creates)
	// After it, one retry; then the delay doubles (1 to 2 s).
	e.clock.Advance(700 * time.Millisecond)
	tick(t, m)
	creates, _ = e.prov.counts()
	assert.Equal(t, 2, creates)
	e.clock.Advance(900 * time.Millisecond)
	tick(t, m)
	creates, _ = e.prov.counts()
	assert.Equal(t, 2, creates)

	e.prov.set(func(p *testProvider) { p.createErr = nil })
	e.clock.Advance(2 * time.Second)
	tick(t, m)
	assert.Equal(t, 1, m.Stats().Runtimes["go"].Idle, "one creation per round with MaxParallelCreates 1")
	tick(t, m)
	assert.Equal(t, 2, m.Stats().Runtimes["go"].Idle, "success resets the backoff")
}

func TestProbeFailuresReplacePods(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, e.config("m1"))
	tick(t, m)
	pods, _ := e.prov.List(context.Background())
	require.Len(t, pods, 2)
	e.prober.kill(pods[0].ID, errors.New("connection refused"))
	e.prober.kill(pods[1].ID, ErrNotIdle)

	e.clock.Advance(10 * time.Second)
	tick(t, m)
	_, deleted := e.prov.counts()
	assert.Equal(t, []string{pods[0].ID}, deleted, "a dead pod is deleted; a specialized one is left alone")
	s := m.Stats().Runtimes["go"]
	assert.EqualValues(t, 2, s.ProbeFailures)
	assert.Equal(t, 2, s.Idle, "both are replaced in the same round")
	_, _, held := e.store.Get(pods[1].ID)
	assert.False(t, held, "the specialized pod's lease is released")
}

func TestDeleteReleasesTheClaim(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, e.config("m1"))
	tick(t, m)
	pod, err := m.TryTake(context.Background(), "go", nil)
	require.NoError(t, err)
	require.NoError(t, m.Delete(context.Background(), pod))
	_, ok := e.prov.Get(pod.ID)
	assert.False(t, ok)
	_, _, ok = e.store.Get(pod.ID)
	assert.False(t, ok, "the claim is gone with the pod")
	require.NoError(t, m.Delete(context.Background(), pod), "deleting twice is fine")

	// Deleting an idle pod removes it from the pool.
	pods, _ := e.prov.List(context.Background())
	require.Len(t, pods, 1)
	require.NoError(t, m.Delete(context.Background(), pods[0]))
	assert.Zero(t, m.Stats().Runtimes["go"].Idle)
}

func TestCloseDeletesIdlePodsAndFailsWaiters(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 2, Max: 5}, "py": {Min: 0, Max: 1}}
	m := e.manager(t, cfg)
	tick(t, m)
	taken, err := m.TryTake(context.Background(), "go", nil)
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		_, err := m.Take(context.Background(), "py", nil)
		got <- err
	}()
	require.Eventually(t, func() bool { return m.Stats().Runtimes["py"].Waiting == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, m.Close())
	require.ErrorIs(t, <-got, ErrClosed)
	require.NoError(t, m.Close(), "Close is idempotent")
	pods, _ := e.prov.List(context.Background())
	require.Len(t, pods, 1, "idle pods are deleted, taken ones are not")
	assert.Equal(t, taken.ID, pods[0].ID)
	_, err = m.TryTake(context.Background(), "go", nil)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, m.Tick(context.Background()), ErrClosed)
	members, _ := e.store.Members(context.Background())
	assert.Empty(t, members, "a closed manager leaves the membership")
}

func TestCloseCanKeepIdlePodsForOthers(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("m1")
	cfg.KeepIdleOnClose = true
	m := e.manager(t, cfg)
	tick(t, m)
	require.NoError(t, m.Close())
	assert.Equal(t, 2, e.prov.Len())
	// Another manager adopts them at its first round.
	m2 := e.manager(t, e.config("m2"))
	tick(t, m2) // acquires the leases, probes, and the pods join the pool
	assert.Equal(t, 2, m2.Stats().Runtimes["go"].Idle)
	assert.EqualValues(t, 2, m2.Stats().Adopted)
	creates, _ := e.prov.counts()
	assert.Equal(t, 2, creates, "nothing new was created")
}

func TestBackgroundManager(t *testing.T) {
	sp, err := newStaticProvider(staticConfig{})
	require.NoError(t, err)
	m, err := New(sp, Config{
		Runtimes:      map[string]RuntimeConfig{"go": {Min: 2, Max: 4}},
		ProbeInterval: -1,
	})
	require.NoError(t, err)
	defer m.Close()
	require.Eventually(t, func() bool { return m.Stats().Runtimes["go"].Idle == 2 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for range 10 { // more than the pool: the rest are created on demand
		p, err := m.Take(ctx, "go", nil)
		require.NoError(t, err)
		require.False(t, seen[p.ID])
		seen[p.ID] = true
	}
	require.NoError(t, m.Close())
	assert.Equal(t, 10, sp.Len(), "Close deleted the idle pods, not the taken ones")
}

func TestBackgroundManagerWatchDropsDeletedPods(t *testing.T) {
	sp, err := newStaticProvider(staticConfig{})
	require.NoError(t, err)
	m, err := New(sp, Config{
		Runtimes:      map[string]RuntimeConfig{"go": {Min: 1, Max: 1}},
		ProbeInterval: -1,
		LeaseTTL:      time.Hour, // no upkeep round during the test: only the watch can notice
	})
	require.NoError(t, err)
	defer m.Close()
	require.Eventually(t, func() bool {
		sp.mu.Lock()
		watching := len(sp.watchers) == 1
		sp.mu.Unlock()
		return watching && m.Stats().Runtimes["go"].Idle == 1
	}, 10*time.Second, time.Millisecond)
	pods, _ := sp.List(context.Background())
	require.Len(t, pods, 1)
	require.NoError(t, sp.Delete(context.Background(), pods[0].ID))
	require.Eventually(t, func() bool {
		ps, _ := sp.List(context.Background())
		return len(ps) == 1 && ps[0].ID != pods[0].ID && m.Stats().Runtimes["go"].Idle == 1
	}, 10*time.Second, time.Millisecond, "the deleted pod is dropped and replaced")
}

// A Take's refill waits for RefillDelay (here: longer than the test), while
// a Take that finds no idle pod still has one created at once.
func TestRefillDelayDefersTheRefillButNotAWaitingTake(t *testing.T) {
	prov, err := newStaticProvider(staticConfig{})
	require.NoError(t, err)
	m, err := New(prov, Config{
		Runtimes:      map[string]RuntimeConfig{"go": {Min: 1, Max: 1}},
		Sizing:        func(_ string, rc RuntimeConfig) (SizingPolicy, error) { return FixedSizing(1), nil },
		ProbeInterval: -1,
		RefillDelay:   time.Hour,
	})
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.Eventually(t, func() bool { return m.Stats().Runtimes["go"].Idle == 1 }, 10*time.Second, time.Millisecond)
	created := m.Stats().Runtimes["go"].Created
	first, err := m.Take(ctx, "go", nil)
	require.NoError(t, err)
	m.mu.Lock()
	armed := m.refillArmed
	m.mu.Unlock()
	assert.True(t, armed, "the refill waits for RefillDelay")
	assert.Equal(t, created, m.Stats().Runtimes["go"].Created, "nothing created at once")

	second, err := m.Take(ctx, "go", nil) // finds no idle pod: creation at once
	require.NoError(t, err)
	assert.NotEqual(t, first.ID, second.ID)

	_, err = New(prov, Config{Runtimes: map[string]RuntimeConfig{"go": {Max: 1}}, RefillDelay: -1})
	assert.Error(t, err)
}
