package warmpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/sharding"
)

// Preference scores a candidate pod for a Take: the highest score wins,
// and ties go to the pod idle the longest. A typical preference scores 1
// for a pod on a node that caches the function's code. It is called under
// the Manager's lock, so it must be fast and must not call the Manager.
type Preference func(Pod) int

// Manager keeps a pool of idle generic pods per runtime and hands them out
// to cold starts. See the package documentation for how it sizes,
// replenishes, probes and shares pods with other managers. It is safe for
// concurrent use.
type Manager struct {
	cfg    Config
	holder string // the name leases are held in: ID and an incarnation
	// private is set when the lease store is the Manager's own default:
	// nobody else can arbitrate the pods, so pods created by another
	// manager are never adopted (see rebalance).
	private    bool
	log        *slog.Logger
	now        func() time.Time
	clock      clock.Clock
	provider   PodProvider
	prober     Prober
	health     NodeHealth
	leases     LeaseStore
	membership Membership
	backoff    Backoff
	pools      map[string]*pool // fixed after New
	poolList   []*pool          // sorted by runtime, for a deterministic order

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kickCh chan struct{}
	// refill is the delayed kick after a Take (RefillDelay); refillArmed
	// says it is pending (under mu).
	refill      clock.Timer
	refillArmed bool
	tickMu      sync.Mutex // serializes upkeep rounds

	rngMu sync.Mutex
	rng   *rand.Rand

	mu      sync.Mutex
	closed  bool
	table   *sharding.Table
	members []Member
	held    map[string]*entry // leased pods, idle or awaiting their first probe
	taking  map[string]bool   // pods between pick and claim
	claimed map[string]claim  // pods handed out and not yet deleted
	seq     uint64            // numbers additions to held and claimed
	// claimedSeen holds the pods the store reported claimed (by anyone),
	// with when: they are not asked about again for LeaseTTL/2, the time
	// a dead holder's claim may take to lapse being a TTL anyway.
	claimedSeen map[string]time.Time
	// deleting holds the pods Delete was asked to delete, with the seq at
	// which it began: a List taken before the deletion still shows them,
	// and with their claims released they would look adoptable. They are
	// never adopted, and forgotten once a later List no longer has them.
	deleting      map[string]uint64
	creatingTotal int
	probing       int
	nextTickAt    time.Time
	handedOver    int64
	adopted       int64
	foreign       int // pods of other managers seen by the latest round (private leases)
	leasesLost    int64
	closeOnce     sync.Once
	closeErr      error
}

type pool struct {
	runtime string
	labels  map[string]string
	sizer   SizingPolicy
	max     int

	idle     []*entry // oldest first
	pending  int      // held entries awaiting their first probe
	waiters  []*waiter
	creating int
	target   int
	failures int // consecutive creation failures
	retryAt  time.Time

	taken, created, createFailures, probeFailures int64
}

type entry struct {
	pod       Pod
	lease     Lease
	pool      *pool
	idle      bool // in pool.idle; false while awaiting the first probe
	probing   bool
	nextProbe time.Time
	seq       uint64 // when it was added to held
}

// claim is a pod handed out: its claimed lease, and when (seq) it was
// claimed.
type claim struct {
	lease Lease
	seq   uint64
}

type waiter struct {
	ch   chan *entry // buffered; closed when the manager closes
	pref Preference
}

// New returns a Manager of the pods of provider, tuned by cfg. Unless
// cfg.Manual is set it starts the background upkeep at once; call Close to
// stop it.
func New(provider PodProvider, cfg Config) (*Manager, error) {
	if provider == nil {
		return nil, errors.New("warmpool: a PodProvider is required")
	}
	private := cfg.Leases == nil
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:         cfg,
		private:     private,
		log:         cfg.Logger,
		now:         cfg.Clock.Now,
		clock:       cfg.Clock,
		provider:    provider,
		prober:      cfg.Prober,
		health:      cfg.NodeHealth,
		leases:      cfg.Leases,
		membership:  cfg.Membership,
		pools:       make(map[string]*pool, len(cfg.Runtimes)),
		held:        make(map[string]*entry),
		taking:      make(map[string]bool),
		claimed:     make(map[string]claim),
		claimedSeen: make(map[string]time.Time),
		deleting:    make(map[string]uint64),
		members:     []Member{cfg.self()},
		table:       sharding.MustNew(sharding.Node{ID: cfg.ID, Weight: cfg.self().Weight}),
	}
	m.backoff, _ = cfg.Backoff.withDefaults()
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	// The manager's ID is mixed in so that managers given the same Seed
	// still name their pods differently (a shared population would see
	// their names collide).
	m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15^xxhash.Sum64String(cfg.ID)))
	m.holder = fmt.Sprintf("%s-%08x", cfg.ID, rand.Uint32()) // not from Seed: two incarnations must differ
	for _, rt := range slices.Sorted(maps.Keys(cfg.Runtimes)) {
		rc := cfg.Runtimes[rt]
		sizer, err := cfg.Sizing(rt, rc)
		if err != nil {
			return nil, fmt.Errorf("warmpool: runtime %q: %w", rt, err)
		}
		labels := maps.Clone(rc.Labels)
		if labels == nil {
			labels = make(map[string]string, 1)
		}
		labels[HolderLabel] = m.holder
		p := &pool{runtime: rt, labels: labels, sizer: sizer, max: rc.Max}
		p.target = min(max(sizer.Target(m.now()), 0), rc.Max)
		m.pools[rt] = p
		m.poolList = append(m.poolList, p)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if !cfg.Manual {
		m.kickCh = make(chan struct{}, 1)
		m.wg.Go(m.run)
		if w, ok := provider.(PodWatcher); ok {
			m.wg.Go(func() { m.watch(w) })
		}
	}
	return m, nil
}

// ID returns the manager's ID.
func (m *Manager) ID() string { return m.cfg.ID }

// Holder returns the name the manager holds its leases in: its ID and an
// incarnation, random per Manager. The pods it creates carry it in their
// [HolderLabel].
func (m *Manager) Holder() string { return m.holder }

// Members returns the members the manager shares the pods with, as of its
// latest round (itself included), sorted by ID.
func (m *Manager) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

// ErrNoIdlePod reports a TryTake that found no idle pod.
var ErrNoIdlePod = errors.New("warmpool: no idle pod")

// Take hands out an idle pod of runtime: the best one by pref (nil: the one
// idle the longest) among those on healthy nodes. When there is none it
// waits, bounded by ctx, for one being created (a waiting Take triggers a
// creation at once). The pod leaves the pool for good: it is claimed in the
// lease store with the manager's fencing token, so that no other manager
// can ever hand it out, and the caller deletes it with [Manager.Delete]
// when its instance ends or its cold start fails.
func (m *Manager) Take(ctx context.Context, runtime string, pref Preference) (Pod, error) {
	return m.take(ctx, runtime, pref, true)
}

// TryTake is Take without waiting: when no idle pod is available it fails at
// once with an error wrapping ErrNoIdlePod (and triggers a creation).
func (m *Manager) TryTake(ctx context.Context, runtime string, pref Preference) (Pod, error) {
	return m.take(ctx, runtime, pref, false)
}

func (m *Manager) take(ctx context.Context, runtime string, pref Preference, wait bool) (Pod, error) {
	p, ok := m.pools[runtime]
	if !ok {
		return Pod{}, fmt.Errorf("%w %q", ErrUnknownRuntime, runtime)
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return Pod{}, ErrClosed
		}
		e := m.pickLocked(p, pref, m.now())
		var w *waiter
		if e == nil && wait {
			w = &waiter{ch: make(chan *entry, 1), pref: pref}
			p.waiters = append(p.waiters, w)
		}
		m.mu.Unlock()
		if e == nil {
			m.kick()
			if !wait {
				return Pod{}, fmt.Errorf("warmpool: take %s: %w", runtime, ErrNoIdlePod)
			}
			var err error
			if e, err = m.wait(ctx, p, w); err != nil {
				return Pod{}, err
			}
		}
		err := m.leases.Claim(ctx, e.lease)
		m.mu.Lock()
		delete(m.taking, e.pod.ID)
		switch {
		case err == nil:
			m.seq++
			m.claimed[e.pod.ID] = claim{e.lease, m.seq}
			p.taken++
			p.sizer.ObserveTake(m.now())
			m.kickAfterLocked(m.cfg.RefillDelay)
			m.mu.Unlock()
			return e.pod.Clone(), nil
		case errors.Is(err, ErrLeaseLost):
			// Another manager owns the pod now (the lease expired or was
			// handed over): forget it and take another.
			m.leasesLost++
			m.mu.Unlock()
		default:
			// The store failed; the pod is still ours.
			m.restoreLocked(e)
			m.mu.Unlock()
			return Pod{}, fmt.Errorf("warmpool: take %s: claiming pod %s: %w", runtime, e.pod.ID, err)
		}
	}
}

func (m *Manager) wait(ctx context.Context, p *pool, w *waiter) (*entry, error) {
	select {
	case e, ok := <-w.ch:
		if !ok {
			return nil, ErrClosed
		}
		return e, nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		m.mu.Unlock()
		return nil, fmt.Errorf("warmpool: take %s: %w", p.runtime, ctx.Err())
	}
	m.mu.Unlock()
	// A pod was delivered (or the manager closed) as ctx ended: give the
	// pod back.
	if e, ok := <-w.ch; ok {
		m.mu.Lock()
		delete(m.taking, e.pod.ID)
		m.restoreLocked(e)
		m.mu.Unlock()
	}
	return nil, fmt.Errorf("warmpool: take %s: %w", p.runtime, ctx.Err())
}

// pickLocked removes and returns the best idle pod of p for pref, or nil.
func (m *Manager) pickLocked(p *pool, pref Preference, now time.Time) *entry {
	best, bestScore := -1, 0
	for i, e := range p.idle {
		if !e.lease.Valid(now) || !m.health.NodeHealthy(e.pod.Node) {
			continue
		}
		s := 0
		if pref != nil {
			s = pref(e.pod)
		}
		if best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return nil
	}
	e := p.idle[best]
	p.idle = slices.Delete(p.idle, best, best+1)
	e.idle = false
	delete(m.held, e.pod.ID)
	m.taking[e.pod.ID] = true
	return e
}

// restoreLocked puts back a pod picked for a Take that did not complete.
func (m *Manager) restoreLocked(e *entry) {
	if m.closed {
		m.log.Warn("warmpool: pod returned after close; its lease will lapse", "pod", e.pod.ID)
		return
	}
	e.idle = true
	m.addHeldLocked(e)
	e.pool.idle = append(e.pool.idle, e)
	m.dispatchLocked(e.pool)
}

// dispatchLocked hands idle pods to waiting Takes, oldest waiter first.
func (m *Manager) dispatchLocked(p *pool) {
	if len(p.waiters) == 0 {
		return
	}
	now := m.now()
	for len(p.waiters) > 0 {
		w := p.waiters[0]
		e := m.pickLocked(p, w.pref, now)
		if e == nil {
			return
		}
		p.waiters = slices.Delete(p.waiters, 0, 1)
		w.ch <- e
	}
}

// addHeldLocked records a leased pod, numbered after every List that
// started before (see rebalance).
func (m *Manager) addHeldLocked(e *entry) {
	m.seq++
	e.seq = m.seq
	m.held[e.pod.ID] = e
}

// dropLocked removes a held pod from the pool (it is not deleted).
func (m *Manager) dropLocked(e *entry) {
	delete(m.held, e.pod.ID)
	if e.idle {
		if i := slices.Index(e.pool.idle, e); i >= 0 {
			e.pool.idle = slices.Delete(e.pool.idle, i, i+1)
		}
		e.idle = false
	} else {
		e.pool.pending--
	}
}

// Delete deletes a pod taken from the manager, when its instance ends or
// its cold start failed, and releases its claim. A pod that is idle in the
// pool is removed from it first. A pod the provider no longer has is not an
// error.
func (m *Manager) Delete(ctx context.Context, pod Pod) error {
	m.mu.Lock()
	m.seq++
	m.deleting[pod.ID] = m.seq
	c, claimed := m.claimed[pod.ID]
	l := c.lease
	delete(m.claimed, pod.ID)
	if e := m.held[pod.ID]; e != nil {
		m.dropLocked(e)
		l, claimed = e.lease, true
	}
	m.mu.Unlock()
	if err := m.provider.Delete(ctx, pod.ID); err != nil && !errors.Is(err, ErrPodNotFound) {
		if claimed {
			m.mu.Lock()
			m.seq++
			m.claimed[pod.ID] = claim{l, m.seq} // keep it for a retry
			m.mu.Unlock()
		}
		return fmt.Errorf("warmpool: delete pod %s: %w", pod.ID, err)
	}
	if claimed {
		if err := m.leases.Release(ctx, l); err != nil && !errors.Is(err, ErrLeaseLost) {
			m.log.Warn("warmpool: releasing a deleted pod's claim failed", "pod", pod.ID, "err", err)
		}
	}
	return nil
}

// kickAfterLocked wakes the background loop after d (at once when d is
// zero); a delayed kick already pending covers this one.
func (m *Manager) kickAfterLocked(d time.Duration) {
	switch {
	case d <= 0:
		m.kick()
	case m.refillArmed:
		// A pending kick covers this Take; postponing it would let a
		// steady stream of takes delay the refill forever.
	case m.refill == nil:
		m.refillArmed = true
		m.refill = m.clock.AfterFunc(d, m.refillNow)
	default:
		m.refillArmed = true
		m.refill.Reset(d)
	}
}

func (m *Manager) refillNow() {
	m.mu.Lock()
	m.refillArmed = false
	m.mu.Unlock()
	m.kick()
}

// kick wakes the background loop to replenish at once.
func (m *Manager) kick() {
	select {
	case m.kickCh <- struct{}{}:
	default:
	}
}

// RuntimeStats describes one pool.
type RuntimeStats struct {
	// Idle counts the pods ready to be taken (on any node), Pending the
	// adopted pods awaiting their first probe, Creating the creations in
	// flight, Waiting the Takes waiting, Target the sizing policy's last
	// answer.
	Idle, Pending, Creating, Waiting, Target int
	// Taken, Created, CreateFailures and ProbeFailures count since New.
	Taken, Created, CreateFailures, ProbeFailures int64
}

// Stats describes a manager.
type Stats struct {
	// Members is the number of live managers this one knows of.
	Members int
	// ForeignPods counts the pods created by other managers that the
	// latest round found in the population of a manager with a private
	// lease store (see [ErrSharedPopulation]); they are never adopted.
	ForeignPods int
	// HandedOver counts pods released to another owner, Adopted the pods
	// acquired from another owner or found unowned, LeasesLost the leases
	// that could not be renewed or claimed.
	HandedOver, Adopted, LeasesLost int64
	// Runtimes holds each pool's figures.
	Runtimes map[string]RuntimeStats
}

// Stats returns the manager's figures.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{Members: len(m.members), ForeignPods: m.foreign, HandedOver: m.handedOver, Adopted: m.adopted, LeasesLost: m.leasesLost,
		Runtimes: make(map[string]RuntimeStats, len(m.pools))}
	for rt, p := range m.pools {
		s.Runtimes[rt] = RuntimeStats{
			Idle: len(p.idle), Pending: p.pending, Creating: p.creating, Waiting: len(p.waiters), Target: p.target,
			Taken: p.taken, Created: p.created, CreateFailures: p.createFailures, ProbeFailures: p.probeFailures,
		}
	}
	return s
}

// Close stops the background work and waits for it, fails the waiting
// Takes with ErrClosed, leaves the membership, and deletes the idle pods
// the manager holds (or, with KeepIdleOnClose, releases their leases for
// other managers to adopt). Pods already taken are not touched. Close is
// idempotent; it returns the errors of the deletions.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		if m.refill != nil {
			m.refill.Stop()
		}
		for _, p := range m.poolList {
			for _, w := range p.waiters {
				close(w.ch)
			}
			p.waiters = nil
		}
		m.mu.Unlock()
		m.cancel()
		m.wg.Wait()

		m.mu.Lock()
		entries := slices.Collect(maps.Values(m.held))
		for _, e := range entries {
			m.dropLocked(e)
		}
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CloseTimeout)
		defer cancel()
		// Leave first, so that the others adopt the released pods at
		// their next round instead of waiting for our heartbeat to lapse.
		if err := m.membership.Leave(ctx, m.cfg.ID); err != nil {
			m.log.Warn("warmpool: leaving the membership failed", "err", err)
		}
		errs := make([]error, len(entries))
		var wg sync.WaitGroup
		sem := make(chan struct{}, m.cfg.MaxParallelCreates)
		for i, e := range entries {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if m.cfg.KeepIdleOnClose {
					_ = m.leases.Release(ctx, e.lease)
					return
				}
				if err := m.deleteLeased(ctx, e); err != nil {
					errs[i] = fmt.Errorf("warmpool: close: delete pod %s: %w", e.pod.ID, err)
				}
			})
		}
		wg.Wait()
		if c, ok := m.prober.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
