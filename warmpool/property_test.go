package warmpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// simProvider is a StaticProvider whose creations fail at random.
type simProvider struct {
	*staticProvider
	mu       sync.Mutex
	failNext bool
}

func (p *simProvider) Create(ctx context.Context, spec PodSpec) (Pod, error) {
	p.mu.Lock()
	fail := p.failNext
	p.mu.Unlock()
	if fail {
		return Pod{}, errors.New("simulated provider failure")
	}
	return p.staticProvider.Create(ctx, spec)
}

type simManager struct {
	m        *Manager
	id       string
	crashed  bool
	closed   bool
	frozenAt time.Time
	nextTick time.Time
}

func (s *simManager) live() bool { return !s.crashed && !s.closed }

// TestPropertyShardedManagers drives managers that share one pod
// population, a lease store and a membership through 10,000 steps of a
// virtual clock with random joins, graceful leaves, crashes (a crashed
// manager's clock freezes, and it may still try to hand out pods, like a
// paused process that wakes up) spaced by the lease TTL plus one renew
// interval, concurrent takes, deletions, dying pods,
// unhealthy nodes and provider failures. After every step it checks:
//
//   - no pod is ever handed out twice;
//   - no pod is handed out on an unhealthy node;
//   - no pod is held by two live managers, and every pod a live manager
//     holds is leased to it in the store with the same token;
//   - no pod that is not taken stays without a live owner longer than the
//     lease TTL plus one renew interval.
func TestPropertyShardedManagers(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runShardedSimulation(t, seed, 10000) })
	}
}

func runShardedSimulation(t *testing.T, seed uint64, steps int) {
	const (
		ttl     = 3 * time.Second
		renew   = time.Second
		step    = 100 * time.Millisecond
		maxLive = 6
	)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 42))
	clock := newWPClock()
	store := NewMemLeaseStore(clock)
	sp, err := newStaticProvider(staticConfig{Nodes: []string{"n1", "n2", "n3"}, Now: clock.Now})
	require.NoError(t, err)
	prov := &simProvider{staticProvider: sp}
	prober := &testProber{}
	var unhealthy sync.Map
	health := NodeHealthFunc(func(n string) bool { _, bad := unhealthy.Load(n); return !bad })

	var mgrs []*simManager
	nextID := 0
	join := func() {
		s := &simManager{id: fmt.Sprintf("m%d", nextID)}
		nextID++
		m, err := New(prov, Config{
			ID: s.id,
			Runtimes: map[string]RuntimeConfig{
				"go": {Min: 1, Max: 4},
				"py": {Min: 0, Max: 3},
			},
			MaxParallelCreates: 3,
			Prober:             prober,
			ProbeInterval:      2 * time.Second,
			NodeHealth:         health,
			Leases:             store,
			Membership:         store,
			LeaseTTL:           ttl,
			RenewInterval:      renew,
			Backoff:            Backoff{Base: 200 * time.Millisecond, Max: 2 * time.Second},
			Manual:             true,
			Seed:               rng.Uint64(),
			Clock: funcClock(func() time.Time {
				if s.crashed {
					return s.frozenAt
				}
				return clock.Now()
			}),
		})
		require.NoError(t, err)
		s.m = m
		t.Cleanup(func() { _ = m.Close() })
		require.NoError(t, m.Tick(ctx))
		s.nextTick = clock.Now().Add(renew)
		mgrs = append(mgrs, s)
	}
	liveMgrs := func() []*simManager {
		var out []*simManager
		for _, s := range mgrs {
			if s.live() {
				out = append(out, s)
			}
		}
		return out
	}
	join()
	join()

	// Removals (crashes and leaves) are spaced by TTL + renew interval:
	// the bound holds for one failure at a time. When the manager that
	// should adopt an orphan fails before it does, the orphan also waits
	// for that failure to be detected (a heartbeat TTL), which no
	// protocol based on heartbeats avoids.
	lastRemoval := clock.Now().Add(-time.Hour)
	takenEver := map[string]string{} // pod → manager that handed it out
	takenBy := map[string]*simManager{}
	unownedSince := map[string]time.Time{}
	var maxUnowned time.Duration
	takes := 0

	for i := range steps {
		clock.Advance(step)
		now := clock.Now()
		live := liveMgrs()
		rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
		for _, s := range live {
			if !now.Before(s.nextTick) {
				prov.mu.Lock()
				prov.failNext = rng.IntN(10) == 0
				prov.mu.Unlock()
				_ = s.m.Tick(ctx) // List never fails here; membership errors cannot happen
				s.nextTick = s.nextTick.Add(renew)
				// After its round, a manager holds only pods that sharding
				// assigns it among the members it knows.
				// (Checked outside the lock: a failed require exits the
				// goroutine, and Cleanup's Close needs the lock.)
				var stray []string
				s.m.mu.Lock()
				for id := range s.m.held {
					if n, _ := s.m.table.Pick(id); n.ID != s.id {
						stray = append(stray, id)
					}
				}
				s.m.mu.Unlock()
				require.Empty(t, stray, "step %d: %s holds pods it does not own after its round", i, s.id)
			}
		}

		switch a := rng.IntN(100); {
		case a < 3 && len(live) < maxLive:
			join()
		case a < 5 && len(live) > 1 && now.Sub(lastRemoval) >= ttl+renew:
			s := live[rng.IntN(len(live))]
			s.m.cfg.KeepIdleOnClose = rng.IntN(2) == 0
			require.NoError(t, s.m.Close())
			s.closed = true
			lastRemoval = now
		case a < 7 && len(live) > 1 && now.Sub(lastRemoval) >= ttl+renew:
			s := live[rng.IntN(len(live))]
			s.crashed, s.frozenAt = true, now
			lastRemoval = now
		case a < 9:
			node := fmt.Sprint("n", 1+rng.IntN(3))
			if _, bad := unhealthy.Load(node); bad {
				unhealthy.Delete(node)
			} else {
				unhealthy.Store(node, true)
			}
		case a < 12:
			// A pod dies: its probe fails from now on.
			if pods, _ := prov.List(ctx); len(pods) > 0 {
				prober.kill(pods[rng.IntN(len(pods))].ID, errors.New("connection refused"))
			}
		case a < 14:
			// A node is lost: the provider deletes a pod behind the
			// managers' backs.
			if pods, _ := prov.List(ctx); len(pods) > 0 {
				_ = prov.Delete(ctx, pods[rng.IntN(len(pods))].ID)
			}
		case a < 30:
			// Instances end: their pods are deleted through the manager
			// that handed them out (or directly, when it closed).
			ids := slices.Sorted(func(yield func(string) bool) {
				for id := range takenBy {
					if !yield(id) {
						return
					}
				}
			})
			rng.Shuffle(len(ids), func(a, b int) { ids[a], ids[b] = ids[b], ids[a] })
			for _, id := range ids[:min(len(ids), 4)] {
				if s := takenBy[id]; !s.closed {
					require.NoError(t, s.m.Delete(ctx, Pod{ID: id}))
				} else {
					_ = prov.Delete(ctx, id)
				}
				delete(takenBy, id)
			}
		case a < 70:
			// Concurrent takes on several managers, zombies included.
			var cands []*simManager
			for _, s := range mgrs {
				if !s.closed && rng.IntN(2) == 0 {
					cands = append(cands, s)
				}
			}
			type result struct {
				s   *simManager
				pod Pod
				err error
			}
			results := make([]result, len(cands))
			var wg sync.WaitGroup
			for j, s := range cands {
				rt := []string{"go", "py"}[rng.IntN(2)]
				prefNode := fmt.Sprint("n", 1+rng.IntN(3))
				wg.Go(func() {
					pod, err := s.m.TryTake(ctx, rt, func(p Pod) int {
						if p.Node == prefNode {
							return 1
						}
						return 0
					})
					results[j] = result{s, pod, err}
				})
			}
			wg.Wait()
			for _, r := range results {
				if r.err != nil {
					require.ErrorIs(t, r.err, ErrNoIdlePod, "step %d", i)
					continue
				}
				takes++
				prev, dup := takenEver[r.pod.ID]
				require.False(t, dup, "step %d: pod %s handed out by %s and before by %s", i, r.pod.ID, r.s.id, prev)
				takenEver[r.pod.ID] = r.s.id
				takenBy[r.pod.ID] = r.s
				// The pod now runs a function: its agent says so.
				prober.kill(r.pod.ID, ErrNotIdle)
				_, bad := unhealthy.Load(r.pod.Node)
				require.False(t, bad, "step %d: pod %s on unhealthy node %s handed out", i, r.pod.ID, r.pod.Node)
			}
		}

		// Invariants.
		now = clock.Now()
		holder := map[string]string{}
		for _, s := range liveMgrs() {
			s.m.mu.Lock()
			held := make(map[string]Lease, len(s.m.held))
			for id, e := range s.m.held {
				held[id] = e.lease
			}
			s.m.mu.Unlock()
			for id, lease := range held {
				other, dup := holder[id]
				require.False(t, dup, "step %d: pod %s held by %s and %s", i, id, other, s.id)
				holder[id] = s.id
				l, claimed, ok := store.Get(id)
				require.True(t, ok && !claimed && l.Holder == s.m.Holder() && l.Token == lease.Token,
					"step %d: %s holds %s, store says %+v claimed=%v ok=%v", i, s.id, id, l, claimed, ok)
			}
		}
		liveIDs := map[string]bool{}
		for _, s := range liveMgrs() {
			liveIDs[s.m.Holder()] = true
		}
		pods, err := prov.List(ctx)
		require.NoError(t, err)
		exists := map[string]bool{}
		for _, p := range pods {
			exists[p.ID] = true
			l, claimed, ok := store.Get(p.ID)
			if claimed || (ok && liveIDs[l.Holder]) {
				delete(unownedSince, p.ID)
				continue
			}
			since, seen := unownedSince[p.ID]
			if !seen {
				unownedSince[p.ID] = now
				continue
			}
			d := now.Sub(since)
			maxUnowned = max(maxUnowned, d)
			require.LessOrEqual(t, d, ttl+renew, "step %d: pod %s unowned for %v", i, p.ID, d)
		}
		for id := range unownedSince {
			if !exists[id] {
				delete(unownedSince, id)
			}
		}
	}
	t.Logf("seed %d: %d managers joined, %d pods handed out, %d pods at the end, longest unowned %v (bound %v)",
		seed, len(mgrs), takes, prov.Len(), maxUnowned, ttl+renew)
	require.Positive(t, takes)
	require.Positive(t, maxUnowned, "the simulation never exercised an adoption")
}
