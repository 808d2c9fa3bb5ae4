package router

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// tracker is the test's own account of one instance.
type tracker struct {
	limit int32
	held  atomic.Int32
	// gone and ejected hold the value of the global sequence when the
	// instance was removed or ejected by its breaker (zero: never).
	gone, ejected atomic.Int64
	// drained is set when, after Remove returned, the instance's slots
	// showed nothing in flight: from then on nothing may be routed to it.
	drained atomic.Bool
	slots   *concurrency.Slots
}

// TestPropertyConcurrentPickReleaseWhileRoutesChange is the property test
// of the route table, meant for -race: pickers pick, acquire, retry and
// release with random outcomes (failures eject instances) while a writer
// adds and removes instances and pushes health reports. It checks that no
// instance ever holds more requests than its limit, that no pick that
// started after an instance's removal or ejection returned it, and that once
// Remove has returned and the instance's slots show nothing in flight, no
// pick (even one that loaded the routes before the removal) returns it:
// what makes draining safe.
func TestPropertyConcurrentPickReleaseWhileRoutesChange(t *testing.T) {
	var seq atomic.Int64
	var trackers sync.Map // *lifecycle.Instance → *tracker
	track := func(inst *lifecycle.Instance) *tracker {
		v, ok := trackers.Load(inst)
		if !ok {
			t.Errorf("unknown instance %s", inst.ID)
			return &tracker{limit: 1 << 30}
		}
		return v.(*tracker)
	}
	obs := ObserverFunc(func(e Event) {
		switch {
		case e.Kind == RouteRemoved:
			track(e.Instance).gone.Store(seq.Add(1))
		case e.Kind == RouteEjected && e.Cause == CauseBreaker:
			// Permanent here: the test never ticks the clock.
			track(e.Instance).ejected.Store(seq.Add(1))
		}
	})
	r, err := New(Config{Breaker: BreakerConfig{ConsecutiveFailures: 2, MaxEjectedShare: 0.3}}, Hooks{Observer: obs})
	require.NoError(t, err)

	var mu sync.Mutex
	var live []*lifecycle.Instance
	next := 0
	add := func(rnd *rand.Rand) {
		next++
		inst := lifecycle.NewInstance(lifecycle.Info{ID: fmt.Sprintf("i%d", next), FunctionID: "f"}, t0, r)
		for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
			require.NoError(t, inst.Transition(t0, s, "start"))
		}
		limit := 1 + rnd.IntN(4)
		slots := concurrency.NewSlots(concurrency.Shared, limit)
		trackers.Store(inst, &tracker{limit: int32(limit), slots: slots})
		require.NoError(t, r.Add(t0, inst, slots, nil))
		mu.Lock()
		live = append(live, inst)
		mu.Unlock()
	}
	wrnd := rand.New(rand.NewPCG(1, 1))
	for range 8 {
		add(wrnd)
	}

	const pickers = 6
	stop := make(chan struct{})
	errs := make(chan error, pickers)
	var picks atomic.Int64
	var wg sync.WaitGroup
	for p := range pickers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(p), 2))
			check := func(rt Route, start int64) error {
				tr := track(rt.Instance())
				if h := tr.held.Add(1); h > tr.limit {
					return fmt.Errorf("instance %s holds %d requests, limit %d", rt.Instance().ID, h, tr.limit)
				}
				if g := tr.gone.Load(); g != 0 && g <= start {
					return fmt.Errorf("pick returned %s after its removal (at %d, pick began at %d)", rt.Instance().ID, g, start)
				}
				if tr.drained.Load() {
					return fmt.Errorf("pick returned %s after it was removed and drained", rt.Instance().ID)
				}
				if e := tr.ejected.Load(); e != 0 && e <= start {
					return fmt.Errorf("pick returned %s after its ejection (at %d, pick began at %d)", rt.Instance().ID, e, start)
				}
				return nil
			}
			release := func(rt Route, o Outcome) {
				track(rt.Instance()).held.Add(-1)
				rt.Release(t0, o)
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := seq.Load()
				rt, err := r.Pick("f")
				if err != nil {
					continue
				}
				picks.Add(1)
				if err := check(rt, start); err != nil {
					errs <- err
					return
				}
				o := Success
				switch rnd.IntN(20) {
				case 0:
					o = ConnectFailed
				case 1:
					o = InstanceFailed
				case 2:
					o = Canceled
				}
				release(rt, o)
				if o == ConnectFailed {
					start = seq.Load()
					if again, err := r.Retry(rt, o, false); err == nil {
						if err := check(again, start); err != nil {
							errs <- err
							return
						}
						release(again, Success)
					}
				}
			}
		})
	}

	for i := range 2000 {
		switch i % 4 {
		case 0:
			add(wrnd)
		case 1, 2:
			mu.Lock()
			if len(live) > 2 {
				k := wrnd.IntN(len(live))
				inst := live[k]
				live = append(live[:k], live[k+1:]...)
				mu.Unlock()
				r.Remove(t0, inst, "churn")
				// Removal happened-before this point; the observer
				// recorded it already.
				tr := track(inst)
				if tr.gone.Load() == 0 {
					t.Errorf("no removal event for %s", inst.ID)
				}
				if tr.slots.InFlight() == 0 {
					tr.drained.Store(true)
				}
				add(wrnd)
				continue
			}
			mu.Unlock()
		case 3:
			mu.Lock()
			inst := live[wrnd.IntN(len(live))]
			mu.Unlock()
			_ = r.ReportHealth(t0, HealthReport{InstanceID: inst.ID, Healthy: wrnd.IntN(2) == 0})
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Positive(t, picks.Load())
	trackers.Range(func(k, v any) bool {
		require.Zero(t, v.(*tracker).held.Load())
		return true
	})
	for _, ri := range r.Routes("f") {
		require.Zero(t, ri.InFlight, "instance %s", ri.Instance.ID)
	}
	f, _ := r.fns.Get("f")
	require.Zero(t, f.retrying.Load(), "retry budget fully returned")
}

// TestConcurrentFunctionsComeAndGo exercises the function index under
// -race: goroutines add and remove instances of many functions (creating and
// deleting entries and growing the index) while others pick.
func TestConcurrentFunctionsComeAndGo(t *testing.T) {
	r, err := New(Config{}, Hooks{})
	require.NoError(t, err)
	const writers, perWriter = 4, 300
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for g := range 2 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if rt, err := r.Pick(fmt.Sprintf("fn-%d-%d", i%writers, (i/writers+g)%perWriter)); err == nil {
					rt.Release(t0, Success)
				}
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var mine []*lifecycle.Instance
			for i := range perWriter {
				inst := readyInstance(t, fmt.Sprintf("fn-%d-%d", w, i), fmt.Sprintf("w%d-i%d", w, i), r)
				if err := r.Add(t0, inst, concurrency.NewSlots(concurrency.Shared, 2), nil); err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, inst)
			}
			for i, inst := range mine {
				if i%2 == 0 && !r.Remove(t0, inst, "test") {
					t.Errorf("remove %s", inst.ID)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	require.Equal(t, writers*perWriter/2, r.Functions())
	for w := range writers {
		for i := range perWriter {
			_, err := r.Pick(fmt.Sprintf("fn-%d-%d", w, i))
			if i%2 == 0 {
				require.ErrorIs(t, err, ErrNoRoute)
			} else {
				require.NoError(t, err)
			}
		}
	}
}
