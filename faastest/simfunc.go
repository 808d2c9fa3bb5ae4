package faastest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// function is one simulated function: its policies, instances, wait queue
// and statistics.
type function struct {
	spec   FunctionSpec
	rng    *rand.Rand // service times
	scaler concurrency.ScalingPolicy
	meter  *concurrency.Meter
	pool   *pool

	queue    fifo[queued] // waiting requests, possibly stale entries
	nQueued  int          // live entries of queue
	ready    []*instance  // routable instances, oldest first
	starting int          // cold starts asked for, not Ready yet
	held     int          // requests holding a slot on an instance

	acct acct
	st   fnStats
}

// dormant reports whether f has no instance, no cold start and no
// request.
func (f *function) dormant() bool {
	return len(f.ready) == 0 && f.starting == 0 && f.held == 0 && f.nQueued == 0
}

// queued is a wait-queue entry; it is stale when the request gave up (its
// generation moved on).
type queued struct {
	r   *request
	gen uint32
}

// instance is one Ready (or draining) function instance: the
// lifecycle.Instance and concurrency.Slots the router holds, and what
// executes on it.
type instance struct {
	fn       *function
	li       *lifecycle.Instance
	slots    *concurrency.Slots
	node     *node
	held     int // requests holding one of its slots
	running  int // requests executing (at most Parallelism)
	local    fifo[*request]
	readyAt  int64
	lastUsed int64
	draining bool
	idle     bool // counted as idle in the accounts
}

type reqState uint8

const (
	stQueued reqState = iota + 1
	stHolding
)

// request is one admitted invocation. Requests are recycled; gen counts
// the recycling so that stale events and queue entries are recognised.
type request struct {
	fn      *function
	inst    *instance
	route   router.Route
	ticket  loadshed.Ticket
	arrival int64
	execAt  int64
	service int64
	gen     uint32
	state   reqState
	counted bool // arrived after the warm-up: part of the report
}

func (s *sim) newRequest(f *function) *request {
	var r *request
	if n := len(s.free); n > 0 {
		r = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		r = new(request)
	}
	r.fn = f
	return r
}

func (s *sim) recycle(r *request) {
	gen := r.gen + 1
	*r = request{gen: gen}
	s.free = append(s.free, r)
}

// observe feeds the function's meter the demand it sees: requests holding
// or waiting for a slot.
func (s *sim) observe(f *function) { f.meter.Observe(s.time(), f.held+f.nQueued) }

// arrive admits an invocation through the shedder, routes it through the
// router's policy, or queues it and makes sure cold starts are under way.
func (s *sim) arrive(a Arrival) error {
	if a.Function == "" {
		return fmt.Errorf("%w: arrival at %v without a function", ErrWorkload, a.At)
	}
	f, err := s.function(a.Function)
	if err != nil {
		return err
	}
	counted := s.now >= s.warmUp
	if counted {
		f.st.invocations++
	}
	// Draw the service time before admission, so that the same request
	// gets the same demand whatever a configuration decides about it.
	service := int64(sample(f.spec.Service, f.rng))
	var ticket loadshed.Ticket
	if s.shed != nil {
		caller := a.Caller
		if caller == "" {
			caller = f.spec.ID
		}
		t, err := s.shed.Admit(s.time(), caller, loadshed.Default)
		if err != nil {
			if counted {
				f.st.shed++
			}
			return nil
		}
		ticket = t
	}
	r := s.newRequest(f)
	r.arrival, r.service, r.ticket, r.counted = s.now, service, ticket, counted
	if f.nQueued == 0 {
		if rt, err := s.router.Pick(f.spec.ID); err == nil {
			s.begin(r, rt)
			s.observe(f)
			return nil
		}
	}
	s.enqueue(f, r)
	s.observe(f)
	s.wantCapacity(f)
	return nil
}

// wantCapacity is the dataplane's slow path (faas.Dataplane's
// wantCapacity): a request that found no free slot makes sure that
// ceil(waiting / Concurrency) cold starts are under way, within
// MaxInstances. How many instances the function keeps is the scaling
// policy's business, at its next decision.
func (s *sim) wantCapacity(f *function) {
	per := f.spec.Concurrency
	want := min((f.nQueued+per-1)/per, f.spec.MaxInstances-len(f.ready))
	for n := f.starting; n < want; n++ {
		s.startCold(f)
	}
}

func (s *sim) enqueue(f *function, r *request) {
	if f.nQueued >= f.spec.MaxQueue {
		r.ticket.Done(s.time(), loadshed.Dropped)
		if r.counted {
			f.st.queueFull++
		}
		s.recycle(r)
		return
	}
	r.state = stQueued
	f.queue.push(queued{r, r.gen})
	f.nQueued++
	s.queued++
	s.schedule(event{at: s.now + int64(f.spec.QueueTimeout), kind: evQueueTimeout, req: r, gen: r.gen})
}

// popQueued returns the longest-waiting live request of f, or nil.
func (f *function) popQueued(s *sim) *request {
	for {
		q, ok := f.queue.pop()
		if !ok {
			return nil
		}
		if q.r.gen == q.gen && q.r.state == stQueued {
			f.nQueued--
			s.queued--
			return q.r
		}
	}
}

// giveUp ends a request that waited longer than the queue timeout.
func (s *sim) giveUp(r *request) {
	f := r.fn
	f.nQueued--
	s.queued--
	r.ticket.Done(s.time(), loadshed.Dropped)
	if r.counted {
		f.st.timedOut++
	}
	s.recycle(r) // its queue entry is now stale
	s.observe(f)
}

// begin gives r the slot rt holds on an instance.
func (s *sim) begin(r *request, rt router.Route) {
	inst := s.insts[rt.Instance()]
	f := r.fn
	r.route, r.inst, r.state = rt, inst, stHolding
	r.ticket.Started(s.time())
	if inst.idle {
		inst.idle = false
		s.account(f, 0, -1)
	}
	inst.held++
	f.held++
	s.held++
	if inst.running < f.spec.Parallelism {
		s.execute(inst, r)
	} else {
		inst.local.push(r)
	}
}

func (s *sim) execute(inst *instance, r *request) {
	inst.running++
	r.execAt = s.now
	s.schedule(event{at: s.now + r.service, kind: evComplete, req: r})
}

// complete ends r's execution: the next request waiting inside the
// instance starts, the route is released (the router hands the slot to
// the function's longest waiter, if any), and the instance turns idle or,
// when draining, terminates.
func (s *sim) complete(r *request) {
	inst, f := r.inst, r.fn
	inst.running--
	if next, ok := inst.local.pop(); ok {
		s.execute(inst, next)
	}
	if r.counted {
		cold := inst.readyAt > r.arrival
		f.st.record(s.now-r.arrival, r.execAt-r.arrival, cold)
	}
	r.ticket.Done(s.time(), loadshed.Success)
	rt := r.route
	s.recycle(r)
	rt.Release(s.time(), router.Success)
	inst.held--
	f.held--
	s.held--
	inst.lastUsed = s.now
	if inst.held == 0 {
		if inst.draining {
			s.terminate(inst)
		} else {
			inst.idle = true
			s.account(f, 0, 1)
		}
	}
	s.observe(f)
}

// waiters are a function's router.Waiters: a slot released on a routable
// instance goes straight to the function's longest waiter, as in the
// dataplane.
type waiters struct {
	s *sim
	f *function
}

func (w waiters) Handoff(rt router.Route) bool {
	r := w.f.popQueued(w.s)
	if r == nil {
		return false
	}
	w.s.begin(r, rt)
	return true
}

// dispatch serves f's waiters from free capacity (a new instance).
func (s *sim) dispatch(f *function) {
	for f.nQueued > 0 {
		rt, err := s.router.Pick(f.spec.ID)
		if err != nil {
			return
		}
		s.begin(f.popQueued(s), rt)
	}
}

// account changes the alive and idle instance counts of f and of the
// total.
func (s *sim) account(f *function, dAlive, dIdle int) {
	f.acct.add(s.now, dAlive, dIdle)
	s.total.add(s.now, dAlive, dIdle)
}

// decide asks f's scaling policy how many instances f should have and
// applies the answer: cold starts to scale up, draining to scale down.
func (s *sim) decide(f *function) {
	now := s.time()
	o := f.meter.Observation(now)
	o.Instances = len(f.ready) + f.starting
	o.InstanceLimit = f.spec.Concurrency
	o.InFlight = f.held
	o.Queued = f.nQueued
	// A custom policy is held to the spec's bounds, as in the dataplane.
	want := min(max(f.scaler.Decide(now, o).Desired, f.spec.MinInstances), f.spec.MaxInstances)
	// The dataplane's own round: which to drain, how many to start.
	reps := s.replicas[:0]
	for _, in := range f.ready {
		reps = append(reps, concurrency.Replica{Current: true, Ready: true, InFlight: in.held,
			ReadyAt: Epoch.Add(time.Duration(in.readyAt)), LastUsed: Epoch.Add(time.Duration(in.lastUsed))})
	}
	s.replicas = reps
	plan := concurrency.PlanRound(now, want, f.starting, reps, s.cfg.ScaleDownDelay)
	for n := f.starting; n < plan.Start; n++ {
		s.startCold(f)
	}
	victims := make([]*instance, len(plan.Drain))
	for i, k := range plan.Drain {
		victims[i] = f.ready[k]
	}
	for _, in := range victims {
		s.drain(f, in)
	}
}

// drain takes inst out of the routes; it terminates once its requests
// have finished.
func (s *sim) drain(f *function, inst *instance) {
	now := s.time()
	s.router.Remove(now, inst.li, "scale down")
	_ = inst.li.Transition(now, lifecycle.Draining, "scale down")
	inst.draining = true
	f.ready = slices.DeleteFunc(f.ready, func(x *instance) bool { return x == inst })
	if inst.held == 0 {
		s.terminate(inst)
	}
}

func (s *sim) terminate(inst *instance) {
	_ = inst.li.Transition(s.time(), lifecycle.Terminated, "drained")
	delete(s.insts, inst.li)
	dIdle := 0
	if inst.idle {
		inst.idle, dIdle = false, -1
	}
	s.account(inst.fn, -1, dIdle)
	if s.warm {
		inst.fn.st.terminated++
	}
}
