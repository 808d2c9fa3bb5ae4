package router

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/internal/index"
	"github.com/faasplane/faas/lifecycle"
)

// Config configures a [Router]. The zero value is valid: every field has a
// documented default.
type Config struct {
	// Policy chooses among a function's candidates. Default [P2C].
	Policy Policy
	// Rand is the source of every random choice: policies and ejection
	// jitter. It must be safe for concurrent use when the router is used
	// concurrently. Default [RuntimeSource] (lock-free, not reproducible);
	// a simulator passes a seeded source such as rand.NewPCG.
	Rand rand.Source
	// PickAttempts bounds how many times Pick asks the policy again after
	// a concurrent request took the chosen slot first. Default 3.
	PickAttempts int
	// Breaker configures outlier ejection; see [BreakerConfig].
	Breaker BreakerConfig
	// Retry is the retry budget of each function; see [RetryBudget].
	// Default 20 % of active requests, at least 3.
	Retry RetryBudget
	// Logger receives the route events: at info level those the router
	// decided (ejections, readmissions, health, migrations), at debug
	// level the others. Default: discard.
	Logger *slog.Logger
}

// Hooks are what a [Router] tells its owner.
type Hooks struct {
	// Observer receives route events (see [Observer] for what it may
	// do).
	Observer Observer
	// Replace is called when the router gives up on an instance (ejected
	// MigrateAfter times, liveness failed, its function process exited)
	// so that the owner starts a replacement, typically a cold start. It
	// is called without any router lock held, before the instance is
	// moved to Draining; it should not block.
	Replace func(inst *lifecycle.Instance, reason string)
}

// Waiters take released slots for requests that wait for capacity: a
// function's queue (concurrency.Queue[Route] implements it). Handoff is
// offered every slot released from a route that is still routable, before
// the slot goes back to the instance; it returns true when it took the
// slot over, and whoever it gave rt to must Release it. It runs on the hot
// path: it must be fast and must not block.
type Waiters interface {
	Handoff(rt Route) bool
}

// RetryBudget caps the retries of one function that may be in flight at
// once: at most Ratio × the function's active requests (rounded down), but
// at least Min. The defaults (20 %, 3) follow Linkerd's retry budget.
type RetryBudget struct {
	// Ratio is the share of active requests that may be retries. Default
	// 0.2; must be in (0, 1].
	Ratio float64
	// Min is the number of retries always allowed in flight. Default 3;
	// a negative value means none.
	Min int
}

// Limit returns how many retries may be in flight while active requests
// are.
func (b RetryBudget) Limit(active int) int {
	return max(b.Min, int(b.Ratio*float64(active)))
}

// Router is the route table of a dataplane: for every function, the
// instances that may serve it, their concurrency slots, health and
// breakers. Pick, Acquire, Route.Release and the read methods are
// lock-free and allocation-free; changes of a function's routes take that
// function's lock and publish a new snapshot. A Router starts no goroutine;
// [HealthMonitor] drives its clock. All methods are safe for concurrent
// use.
type Router struct {
	policy   Policy
	src      rand.Source
	attempts int
	breaker  BreakerConfig
	retry    RetryBudget
	observer Observer
	replace  func(*lifecycle.Instance, string)
	log      *slog.Logger

	fns *index.Map[*function]

	mu        sync.Mutex // guards instances and open; taken inside function locks
	instances map[string]*member
	open      map[*member]struct{} // members whose breaker is open, for Tick
}

// New returns an empty router tuned by cfg, reporting to hooks. It returns
// an error wrapping [ErrInvalidConfig] when a field of cfg is out of range.
func New(cfg Config, hooks Hooks) (*Router, error) {
	r := &Router{
		policy:    cfg.Policy,
		src:       cfg.Rand,
		attempts:  cfg.PickAttempts,
		retry:     cfg.Retry,
		observer:  hooks.Observer,
		replace:   hooks.Replace,
		log:       cfg.Logger,
		fns:       index.New[*function](),
		instances: make(map[string]*member),
		open:      make(map[*member]struct{}),
	}
	if r.policy == nil {
		r.policy = P2C()
	}
	if r.src == nil {
		r.src = runtimeSource{}
	}
	if r.attempts == 0 {
		r.attempts = 3
	}
	if r.attempts < 1 {
		return nil, fmt.Errorf("%w: PickAttempts must be ≥ 1, got %d", ErrInvalidConfig, cfg.PickAttempts)
	}
	var err error
	if r.breaker, err = cfg.Breaker.withDefaults(); err != nil {
		return nil, err
	}
	if r.retry.Ratio == 0 {
		r.retry.Ratio = 0.2
	}
	if !(r.retry.Ratio > 0 && r.retry.Ratio <= 1) {
		return nil, fmt.Errorf("%w: Retry.Ratio must be in (0, 1], got %v", ErrInvalidConfig, cfg.Retry.Ratio)
	}
	if r.retry.Min == 0 {
		r.retry.Min = 3
	}
	r.retry.Min = max(r.retry.Min, 0)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Policy returns the router's policy.
func (r *Router) Policy() Policy { return r.policy }

// Add puts inst into its function's routes, with slots counting its
// requests in flight; the slots released from its routes are offered to
// waiters first (nil: none). inst becomes a candidate when it is Ready (now or
// later; pass the router as a [lifecycle.Observer] of the instance, see
// [Router.ObserveTransition]). It returns an error wrapping
// [ErrInvalidInstance] for a nil instance or slots, an empty ID or function
// ID, or a state that is not live, and [ErrDuplicateInstance] when an
// instance with the same ID is already routed.
func (r *Router) Add(now time.Time, inst *lifecycle.Instance, slots *concurrency.Slots, waiters Waiters) error {
	switch {
	case inst == nil:
		return fmt.Errorf("%w: nil instance", ErrInvalidInstance)
	case inst.ID == "" || inst.FunctionID == "":
		return fmt.Errorf("%w: instance %q of function %q: empty ID", ErrInvalidInstance, inst.ID, inst.FunctionID)
	case slots == nil:
		return fmt.Errorf("%w: instance %q: nil slots", ErrInvalidInstance, inst.ID)
	case !inst.State().Live():
		return fmt.Errorf("%w: instance %q is %s", ErrInvalidInstance, inst.ID, inst.State())
	}
	m := &member{inst: inst, slots: slots, waiters: waiters, gate: concurrency.NewSlots(concurrency.Exclusive, 1), br: breaker{cfg: r.breaker}}
	for {
		f := r.fns.GetOrCreate(inst.FunctionID, r.newFunction)
		f.mu.Lock()
		if f.dead {
			f.mu.Unlock()
			continue
		}
		// m.fn is set before m is published in r.instances, where the
		// health monitor finds it without f's lock.
		m.fn = f
		r.mu.Lock()
		_, dup := r.instances[inst.ID]
		if !dup {
			r.instances[inst.ID] = m
		}
		r.mu.Unlock()
		if dup {
			f.dropIfEmpty()
			f.mu.Unlock()
			return fmt.Errorf("%w: %q", ErrDuplicateInstance, inst.ID)
		}
		f.attach(now, m)
		f.mu.Unlock()
		return nil
	}
}

// Remove takes inst out of the routes at once and reports whether it was
// routed. Requests in flight on it keep their slots and release them as
// usual; once Remove has returned, no Pick or Acquire returns inst, so when
// its slots show nothing in flight after Remove, nothing more will be sent
// to it. Remove does not change inst's lifecycle state.
func (r *Router) Remove(now time.Time, inst *lifecycle.Instance, reason string) bool {
	m := r.lookup(inst)
	if m == nil {
		return false
	}
	f := m.fn
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.removed {
		return false
	}
	f.detach(now, m, CauseCaller, reason)
	return true
}

// ObserveTransition keeps the routes in step with lifecycle states, so the
// router is meant to be passed to [lifecycle.NewInstance] as one of the
// instance's observers: an instance that leaves Ready stops being a
// candidate, one that returns to Ready becomes one again, and one that
// turns Draining, Terminated or Failed is removed. (Pick also checks the
// state of what it returns, so an instance whose transitions the router does
// not observe is never picked outside Ready, but it stays in the snapshot
// and costs failed attempts.) Transitions of instances the router does not
// hold are ignored.
func (r *Router) ObserveTransition(inst *lifecycle.Instance, t lifecycle.Transition) {
	m := r.lookup(inst)
	if m == nil {
		return
	}
	f := m.fn
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.removed {
		return
	}
	reason := fmt.Sprintf("state %s → %s: %s", t.From, t.To, t.Reason)
	if !t.To.Live() {
		f.detach(t.At, m, CauseState, reason)
		return
	}
	f.update(t.At, m, CauseState, reason, time.Time{})
}

// tick advances the router's clock to now: breakers whose ejection has
// ended turn half-open and their instances take probe requests again. The
// [HealthMonitor] calls it on every round; a simulator calls it with
// virtual time. It costs O(ejected instances).
func (r *Router) tick(now time.Time) {
	r.mu.Lock()
	due := make([]*member, 0, len(r.open))
	for m := range r.open {
		due = append(due, m)
	}
	r.mu.Unlock()
	// In a stable order, so that a simulation replays the same events.
	slices.SortFunc(due, func(a, b *member) int { return strings.Compare(a.inst.ID, b.inst.ID) })
	for _, m := range due {
		f := m.fn
		f.mu.Lock()
		if !m.removed && m.br.Expire(now) {
			r.mu.Lock()
			delete(r.open, m)
			r.mu.Unlock()
			f.update(now, m, CauseBreaker, "ejection ended; probing", time.Time{})
		}
		f.mu.Unlock()
	}
}

// lookup returns inst's member, or nil when inst is not routed.
func (r *Router) lookup(inst *lifecycle.Instance) *member {
	if inst == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.instances[inst.ID]; m != nil && m.inst == inst {
		return m
	}
	return nil
}

// members returns every routed member.
func (r *Router) members() []*member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*member, 0, len(r.instances))
	for _, m := range r.instances {
		out = append(out, m)
	}
	return out
}

// Functions returns the number of functions with at least one routed
// instance.
func (r *Router) Functions() int { return r.fns.Len() }

// Stats describes one function's routes at one moment.
type Stats struct {
	// Instances is the number of instances in the function's routes.
	Instances int
	// Routable counts the instances that take requests: Ready, healthy
	// and not ejected.
	Routable int
	// Probing counts the instances on half-open probation (one request
	// at a time).
	Probing int
	// Ejected counts the instances whose breaker is open or half-open.
	Ejected int
	// Unhealthy counts the instances a health check took out.
	Unhealthy int
	// InFlight is the number of requests in flight on all instances.
	InFlight int
	// Free is the number of free slots on the routable instances: how
	// many more requests the function takes now without a cold start.
	Free int
	// Panicking is true while the [HealthMonitor] is in panic for the
	// function (HealthConfig.PanicThreshold): so many of its instances
	// fail their pull checks together that it suspects its own network
	// and does not act on those failures.
	Panicking bool
}

// Stats returns the function's route statistics; all zero for a function
// without routes. It reads the current snapshot without locks and costs
// O(instances).
func (r *Router) Stats(functionID string) Stats {
	f, _ := r.fns.Get(functionID)
	if f == nil {
		return Stats{}
	}
	s := f.snap.Load()
	st := Stats{Instances: len(s.all), Ejected: s.ejected, Unhealthy: s.unhealthy, Panicking: f.panicking.Load()}
	for _, m := range s.all {
		st.InFlight += m.slots.InFlight()
	}
	st.Routable = len(s.routable)
	st.Probing = len(s.cands) - st.Routable
	for _, sl := range s.routable {
		st.Free += sl.Free()
	}
	return st
}

// Capacity returns the number of routable instances of the function and
// their free slots: what the dataplane needs to decide on a cold start. It
// costs O(instances), without locks or allocation.
func (r *Router) Capacity(functionID string) (routable, free int) {
	f, _ := r.fns.Get(functionID)
	if f == nil {
		return 0, 0
	}
	s := f.snap.Load()
	for _, sl := range s.routable {
		free += sl.Free()
	}
	return len(s.routable), free
}

// RouteInfo describes one instance in a function's routes.
type RouteInfo struct {
	Instance *lifecycle.Instance
	// Routable is true when the instance takes requests; Probing when it
	// takes one probe at a time.
	Routable, Probing bool
	// Unhealthy is true when a health check (pull or push) took it out.
	Unhealthy bool
	// Breaker is the state of its breaker; Ejections how many times it
	// was ejected; Until when the current ejection ends.
	Breaker   BreakerState
	Ejections int
	Until     time.Time
	// InFlight and Limit are its slots' counts.
	InFlight, Limit int
}

// Routes returns the function's instances in the order they were added,
// with their routing state. It takes the function's lock; it is meant for
// introspection, not for the hot path.
func (r *Router) Routes(functionID string) []RouteInfo {
	f, _ := r.fns.Get(functionID)
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]RouteInfo, 0, len(f.members))
	for _, m := range f.members {
		out = append(out, RouteInfo{
			Instance:  m.inst,
			Routable:  m.listed == modeFull,
			Probing:   m.listed == modeProbe,
			Unhealthy: m.health != 0,
			Breaker:   m.br.State(),
			Ejections: m.br.Ejections(),
			Until:     m.br.Until(),
			InFlight:  m.slots.InFlight(),
			Limit:     m.slots.Limit(),
		})
	}
	return out
}
