package router

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
)

// function is one function's entry in the route table. Readers load snap;
// writers hold mu, change the members and publish a new snapshot.
type function struct {
	id   string
	r    *Router
	snap atomic.Pointer[snapshot]
	// retrying counts the function's retries in flight (Router.Retry).
	retrying atomic.Int64
	// panicking is set by the HealthMonitor while the function is in
	// panic (HealthConfig.PanicThreshold), for Stats.
	panicking atomic.Bool

	mu      sync.Mutex
	dead    bool      // removed from the index; Add must look it up again
	members []*member // in the order added; replaced, never modified in place
	ejected int       // members whose breaker is open or half-open
}

// snapshot is what Pick reads: immutable once published.
type snapshot struct {
	cands    []Candidate // routable instances, and half-open ones behind their gate
	members  []*member   // members[i] is cands[i]'s member
	picker   Picker
	all      []*member            // every member, for Stats
	routable []*concurrency.Slots // the slots of the routable (not probing) instances
	// ejected and unhealthy are counted at publication, for Stats.
	ejected, unhealthy int
}

// Routing modes of a member: what the latest snapshot makes of it.
const (
	modeOut   uint32 = iota // not a candidate
	modeProbe               // candidate behind its one-slot gate (half-open)
	modeFull                // candidate
)

// Health sources that can take a member out.
const (
	healthPull uint8 = 1 << iota
	healthPush
)

// member is one routed instance.
type member struct {
	inst  *lifecycle.Instance
	slots *concurrency.Slots
	gate  *concurrency.Slots // one slot: the half-open probe
	fn    *function
	// waiters are offered the slots released while the member is
	// routable (nil: none).
	waiters Waiters

	// mode mirrors listed for lock-free readers: Pick re-checks it after
	// taking a slot, which makes removal and ejection take effect the
	// moment they return, even for picks working on an older snapshot.
	mode atomic.Uint32
	// dirty is set while the breaker is not closed-and-clean, so that a
	// successful release takes the lock only when it may change something.
	dirty atomic.Bool

	// hmu serializes health changes of this member, including the
	// lifecycle transitions they cause; it is never taken under fn.mu.
	hmu sync.Mutex

	// Guarded by fn.mu.
	listed  uint32
	br      breaker
	health  uint8
	removed bool
}

func (r *Router) newFunction(id string) *function {
	f := &function{id: id, r: r}
	f.snap.Store(&snapshot{picker: r.policy.NewPicker(nil)})
	return f
}

// modeOf computes what m should be in the routes; f.mu held.
func (m *member) modeOf() uint32 {
	if m.removed || m.health != 0 || m.inst.State() != lifecycle.Ready {
		return modeOut
	}
	switch m.br.State() {
	case Closed:
		return modeFull
	case HalfOpen:
		return modeProbe
	}
	return modeOut
}

// attach adds m, whose fn is f; f.mu held.
func (f *function) attach(now time.Time, m *member) {
	f.members = append(slices.Clip(f.members), m)
	m.listed = m.modeOf()
	m.mode.Store(m.listed)
	f.publish()
	f.emit(Event{Kind: RouteAdded, Cause: CauseCaller, Reason: "added", At: now, Instance: m.inst})
}

// detach removes m for good; f.mu held.
func (f *function) detach(now time.Time, m *member, cause Cause, reason string) {
	m.removed = true
	m.listed = modeOut
	m.mode.Store(modeOut)
	if m.br.State() != Closed {
		f.ejected--
	}
	f.members = slices.DeleteFunc(slices.Clone(f.members), func(x *member) bool { return x == m })
	r := f.r
	r.mu.Lock()
	delete(r.instances, m.inst.ID)
	delete(r.open, m)
	r.mu.Unlock()
	f.publish()
	f.emit(Event{Kind: RouteRemoved, Cause: cause, Reason: reason, At: now, Instance: m.inst})
	f.dropIfEmpty()
}

// dropIfEmpty removes an entry without members from the index; f.mu held.
func (f *function) dropIfEmpty() {
	if len(f.members) == 0 && !f.dead {
		f.dead = true
		f.r.fns.CompareAndDelete(f.id, f)
	}
}

// update republishes the routes when m's mode changed and reports the
// change as an event; f.mu held. until is the end of a breaker ejection.
// It reports whether the mode changed.
func (f *function) update(now time.Time, m *member, cause Cause, reason string, until time.Time) bool {
	next := m.modeOf()
	prev := m.listed
	if next == prev {
		return false
	}
	m.listed = next
	m.mode.Store(next)
	f.publish()
	e := Event{Cause: cause, Reason: reason, At: now, Instance: m.inst}
	switch next {
	case modeOut:
		e.Kind, e.Until = RouteEjected, until
	case modeProbe:
		e.Kind = RouteHalfOpen
	default:
		e.Kind = RouteReadmitted
	}
	f.emit(e)
	return true
}

// publish builds and stores a new snapshot from the members' listed modes;
// f.mu held.
func (f *function) publish() {
	s := &snapshot{all: f.members, ejected: f.ejected}
	for _, m := range f.members {
		if m.health != 0 {
			s.unhealthy++
		}
		switch m.listed {
		case modeFull:
			s.cands = append(s.cands, Candidate{Instance: m.inst, Slots: m.slots})
			s.members = append(s.members, m)
			s.routable = append(s.routable, m.slots)
		case modeProbe:
			s.cands = append(s.cands, Candidate{Instance: m.inst, Slots: m.gate})
			s.members = append(s.members, m)
		}
	}
	s.picker = f.r.policy.NewPicker(s.cands)
	f.snap.Store(s)
}

// emit logs e and hands it to the observer; f.mu held.
func (f *function) emit(e Event) {
	level := slog.LevelInfo
	if e.Cause == CauseCaller || e.Cause == CauseState {
		level = slog.LevelDebug // the owner knows; only the router's own decisions are news
	}
	if f.r.log.Enabled(context.Background(), level) {
		f.r.log.Log(context.Background(), level, "route "+e.Kind.String(), "function", f.id,
			"instance", e.Instance.ID, "cause", e.Cause.String(), "reason", e.Reason)
	}
	if o := f.r.observer; o != nil {
		o.ObserveRoute(e)
	}
}

// settle feeds a request's outcome to m's breaker; it takes f.mu. probe
// says whether the request was the half-open probe: while half-open, only
// the probe's outcome decides (a request sent before the ejection says
// nothing about the instance now). It returns the work to do once the lock
// is released (retiring m), or nil.
func (m *member) settle(now time.Time, o Outcome, probe bool) (after func()) {
	f := m.fn
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.removed {
		return nil
	}
	defer func() { m.dirty.Store(!m.br.pristine()) }()
	switch {
	case o == Reassigned:
		return f.retire(now, m, CauseReassigned, "agent answered instance_reassigned", false)
	case o == Exited:
		return f.retire(now, m, CauseExited, "agent answered function_exited", true)
	case m.br.State() == HalfOpen && !probe:
		return nil
	case o.Failure():
		if !m.br.Failure(now) {
			return nil
		}
		wasClosed := m.br.State() == Closed
		if wasClosed && f.ejected >= f.r.breaker.MaxEjected(len(f.members)) {
			return nil // the share is reached; the next failure asks again
		}
		until, migrate := m.br.Eject(now, unitFloat(f.r.src))
		if wasClosed {
			f.ejected++
		}
		if migrate {
			return f.retire(now, m, CauseMigrated, fmt.Sprintf("ejected %d times; replacing", m.br.Ejections()), true)
		}
		f.r.mu.Lock()
		f.r.open[m] = struct{}{}
		f.r.mu.Unlock()
		if !f.update(now, m, CauseBreaker, fmt.Sprintf("%s: ejection %d until %s", o, m.br.Ejections(), until.Format(time.RFC3339)), until) {
			f.publish() // already out (e.g. unhealthy): publish the ejected count
		}
	case o == Success:
		if m.br.Success(now) {
			f.ejected--
			if !f.update(now, m, CauseBreaker, "probe succeeded", time.Time{}) {
				f.publish()
			}
		}
	}
	return nil
}

// retire removes m and returns what must follow once f.mu is released: the
// replacement request (when replace is set) and the move to Draining. f.mu
// held.
func (f *function) retire(now time.Time, m *member, cause Cause, reason string, replace bool) (after func()) {
	f.detach(now, m, cause, reason)
	fn := f.r.replace
	return func() {
		if replace && fn != nil {
			fn(m.inst, reason)
		}
		// Lost races (the instance is already Draining or final) are
		// fine: it is out of the routes either way.
		_ = m.inst.Transition(now, lifecycle.Draining, cause.String()+": "+reason)
	}
}

// unitFloat returns a random float64 in [0, 1) from src.
func unitFloat(src interface{ Uint64() uint64 }) float64 {
	return float64(src.Uint64()>>11) / (1 << 53)
}
