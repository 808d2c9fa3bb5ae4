package router

import (
	"math/rand/v2"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
)

// Route is a slot held on one instance: what Pick, Acquire and Retry
// return. It is a small value (two words), not an allocation. Send the
// request to Instance().Addr, then call Release exactly once with how the
// request ended; releasing a route twice releases someone else's slot.
type Route struct {
	m     *member
	flags uint8
}

const (
	routeProbe uint8 = 1 << iota // holds the half-open gate too
	routeRetry                   // counts against the retry budget
)

// Instance returns the instance the route leads to (nil for the zero
// Route).
func (rt Route) Instance() *lifecycle.Instance {
	if rt.m == nil {
		return nil
	}
	return rt.m.inst
}

// Slots returns the slots of the route's instance (nil for the zero Route).
func (rt Route) Slots() *concurrency.Slots {
	if rt.m == nil {
		return nil
	}
	return rt.m.slots
}

// IsZero reports whether rt is the zero Route, which leads nowhere.
func (rt Route) IsZero() bool { return rt.m == nil }

// Probe reports whether the request is its instance's half-open probe: its
// outcome decides whether the instance is readmitted or ejected again.
func (rt Route) Probe() bool { return rt.flags&routeProbe != 0 }

// Retried reports whether the route came from [Router.Retry].
func (rt Route) Retried() bool { return rt.flags&routeRetry != 0 }

// Pick chooses an instance of the function with the router's policy and
// takes one of its slots. It returns [ErrNoRoute] when the function has no
// routable instance and [ErrNoCapacity] when every routable instance is
// full. It does not block, lock or allocate, and its cost does not depend on
// the number of functions in the router.
func (r *Router) Pick(functionID string) (Route, error) {
	f, _ := r.fns.Get(functionID)
	if f == nil {
		return Route{}, ErrNoRoute
	}
	return f.pick(r.src, r.attempts)
}

func (f *function) pick(src rand.Source, attempts int) (Route, error) {
	s := f.snap.Load()
	for range attempts {
		if len(s.cands) == 0 {
			return Route{}, ErrNoRoute
		}
		i := s.picker.Pick(src)
		if i < 0 {
			return Route{}, ErrNoCapacity
		}
		if rt, ok := s.members[i].acquire(s.cands[i].Slots); ok {
			return rt, nil
		}
		// A concurrent request took the slot, or the instance left the
		// routes after this snapshot was loaded: look again.
		s = f.snap.Load()
	}
	return Route{}, ErrNoCapacity
}

// acquire takes a slot on m through the candidate slots c (m's own slots,
// or its gate while half-open), and checks that m is still what the
// snapshot said it was.
func (m *member) acquire(c *concurrency.Slots) (Route, bool) {
	if !c.TryAcquire() {
		return Route{}, false
	}
	want, flags := modeFull, uint8(0)
	if c != m.slots {
		if !m.slots.TryAcquire() {
			c.Release()
			return Route{}, false
		}
		want, flags = modeProbe, routeProbe
	}
	if m.mode.Load() != want || m.inst.State() != lifecycle.Ready {
		m.slots.Release()
		if flags != 0 {
			c.Release()
		}
		return Route{}, false
	}
	return Route{m: m, flags: flags}, true
}

// acquireInstance takes a slot on inst itself, e.g. to give a freshly started
// instance's capacity to requests queued while it started. It returns
// [ErrNoRoute] when inst is not a routable instance of the router and
// [ErrNoCapacity] when it is full. It does not lock or allocate; it costs
// O(instances of the function).
func (r *Router) acquireInstance(inst *lifecycle.Instance) (Route, error) {
	if inst == nil {
		return Route{}, ErrNoRoute
	}
	f, _ := r.fns.Get(inst.FunctionID)
	if f == nil {
		return Route{}, ErrNoRoute
	}
	for range r.attempts {
		s := f.snap.Load()
		i := -1
		for k := range s.cands { // contiguous, unlike the members
			if s.cands[k].Instance == inst {
				i = k
				break
			}
		}
		if i < 0 {
			return Route{}, ErrNoRoute
		}
		if full(s.cands[i].Slots) {
			return Route{}, ErrNoCapacity
		}
		if rt, ok := s.members[i].acquire(s.cands[i].Slots); ok {
			return rt, nil
		}
	}
	return Route{}, ErrNoCapacity
}

// Release returns the route's slot, at now, after a request that ended with
// o, which feeds the instance's breaker: failures count towards an
// ejection, a success clears them, Reassigned removes the instance at once
// and moves it to Draining, and Exited does the same and asks for a
// replacement (Hooks.Replace). While the instance is half-open only its
// probe's outcome counts: success readmits it, failure ejects it again.
// While the instance is routable, the slot is offered to its Waiters
// first. The zero Route releases nothing.
//
// A successful release of a route whose breaker has nothing to forget is
// lock-free and allocation-free; other outcomes take the function's lock.
func (rt Route) Release(now time.Time, o Outcome) {
	m := rt.m
	if m == nil {
		return
	}
	if rt.flags&routeRetry != 0 {
		m.fn.retrying.Add(-1)
	}
	probe := rt.flags&routeProbe != 0
	if o == Success && !probe && !m.dirty.Load() {
		// The common case: nothing to record.
	} else if o != Canceled && o != Rejected {
		if after := m.settle(now, o, probe); after != nil {
			m.slots.Release()
			if probe {
				m.gate.Release()
			}
			after()
			return
		}
	}
	if probe {
		m.gate.Release()
	} else if w := m.waiters; w != nil && m.mode.Load() == modeFull && m.inst.State() == lifecycle.Ready {
		if w.Handoff(Route{m: m}) {
			return
		}
	}
	m.slots.Release()
}

// Retry chooses another instance for a request whose route failed with
// outcome o; release the failed route first. It returns [ErrNotRetryable]
// when a retry is not safe ([Retryable] is false for o and idempotent) or
// the route is itself a retry (a request is retried once), and
// [ErrRetryBudget] when the function already has as many retries in flight
// as its budget allows (Config.Retry, counted against the requests in flight
// on its instances). Otherwise it picks like Pick but never returns the
// failed instance, and returns [ErrNoRoute] or [ErrNoCapacity] when no
// other instance is available. Retries are rare, so Retry may cost
// O(instances).
func (r *Router) Retry(failed Route, o Outcome, idempotent bool) (Route, error) {
	if failed.m == nil || failed.flags&routeRetry != 0 || !Retryable(o, idempotent) {
		return Route{}, ErrNotRetryable
	}
	f, _ := r.fns.Get(failed.m.inst.FunctionID)
	if f == nil {
		return Route{}, ErrNoRoute
	}
	active := 0
	for _, m := range f.snap.Load().all {
		active += m.slots.InFlight()
	}
	limit := int64(r.retry.Limit(active))
	for {
		n := f.retrying.Load()
		if n >= limit {
			return Route{}, ErrRetryBudget
		}
		if f.retrying.CompareAndSwap(n, n+1) {
			break
		}
	}
	rt, err := f.pickOther(r.src, r.attempts, failed.m)
	if err != nil {
		f.retrying.Add(-1)
		return Route{}, err
	}
	rt.flags |= routeRetry
	return rt, nil
}

// pickOther is pick that never returns avoid: when the policy chooses it,
// the least utilized other candidate is taken instead.
func (f *function) pickOther(src rand.Source, attempts int, avoid *member) (Route, error) {
	for range attempts {
		s := f.snap.Load()
		others := len(s.cands)
		for _, m := range s.members {
			if m == avoid {
				others--
			}
		}
		if others == 0 {
			return Route{}, ErrNoRoute
		}
		i := s.picker.Pick(src)
		if i >= 0 && s.members[i] == avoid {
			i = leastOther(s, avoid, below(uint32(src.Uint64()), len(s.cands)))
		}
		if i < 0 {
			return Route{}, ErrNoCapacity
		}
		if rt, ok := s.members[i].acquire(s.cands[i].Slots); ok {
			return rt, nil
		}
	}
	return Route{}, ErrNoCapacity
}

// leastOther returns the least utilized candidate of s that is not full and
// not avoid, scanning from start, or -1.
func leastOther(s *snapshot, avoid *member, start int) int {
	best, bn, bl := -1, uint64(1), uint64(1)
	n := len(s.cands)
	for k := range n {
		i := (start + k) % n
		if s.members[i] == avoid {
			continue
		}
		if ni, li := counts(s.cands[i].Slots); ni*bl < bn*li {
			best, bn, bl = i, ni, li
		}
	}
	return best
}
