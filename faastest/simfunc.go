package faastest

import (
	"errors"
	"fmt"
	"math"
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
	idx    int // creation order
	spec   FunctionSpec
	rng    *rand.Rand // service times
	scaler concurrency.ScalingPolicy
	quiet  concurrency.Quiet // scaler, when it makes promises
	meter  *concurrency.Meter
	limit  *concurrency.FunctionLimit // nil: no function-wide limit
	dp     *dataplane                 // the owner
	pool   *pool                      // the owner's pool of the runtime

	queue    fifo[queued] // waiting requests, possibly stale entries
	nQueued  int          // live entries of queue
	ready    []*instance  // routable instances, oldest first
	starting int          // cold starts asked for, not Ready yet
	held     int          // requests holding a slot on an instance
	gated    int          // its cold starts waiting under MaxColdStarts
	podWait  int          // its cold starts waiting for a pod

	sched  uint8 // fnAwake, fnSleep, fnDormant
	wakeAt int64
	heap   int // index in the scheduler's heap, -1 when not in it

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
	nodeIdx  int        // index in node.insts
	speed    float64    // the instance's own speed factor
	reqs     []*request // requests holding one of its slots
	running  int        // requests executing (at most Parallelism)
	local    fifo[localEntry]
	readyAt  int64
	lastUsed int64
	draining bool
	dead     bool // crashed, or its node was lost
	gone     bool // out of the routes for good; terminated when empty
	ended    bool // terminated
	idle     bool // counted as idle in the accounts
}

// localEntry is a request waiting inside an instance; it is stale when the
// request's attempt moved on (it failed and went elsewhere).
type localEntry struct {
	r       *request
	attempt uint32
}

type reqState uint8

const (
	stQueued reqState = iota + 1
	stHolding
)

// request is one admitted invocation. Requests are recycled; gen counts
// the recycling so that stale events and queue entries are recognised,
// and attempt counts the instances it was sent to.
type request struct {
	fn      *function
	inst    *instance
	route   router.Route
	ticket  loadshed.Ticket
	arrival int64
	execAt  int64
	service int64 // the demand at speed 1
	gen     uint32
	attempt uint32
	slot    int // index in inst.reqs
	state   reqState
	counted bool // arrived after the warm-up: part of the report
	started bool // the shedder's ticket was told it stopped waiting
	waited  bool // it waited for capacity
	limited bool // it holds the function-wide limit
	running bool // executing on its instance
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

// recycle ends r: what it holds of the function-wide limit is given back
// and it returns to the free list.
func (s *sim) recycle(r *request) {
	if r.limited {
		r.fn.limit.Release()
	}
	gen := r.gen + 1
	*r = request{gen: gen}
	s.free = append(s.free, r)
}

// startTicket tells the shedder's ticket that r stopped waiting, once.
func (s *sim) startTicket(r *request) {
	if !r.started {
		r.started = true
		r.ticket.Started(s.time())
	}
}

// observe feeds the function's meter the demand it sees: requests holding
// or waiting for a slot.
func (s *sim) observe(f *function) { f.meter.Observe(s.time(), f.held+f.nQueued) }

// arrive admits an invocation of f at its owner: through the owner's
// shedder and the function-wide limit, then to an instance through the
// router's policy, or into the wait queue with cold starts under way.
func (s *sim) arrive(f *function, a Arrival) {
	dp := f.dp
	counted := int64(a.At) >= s.warmUp
	if counted {
		f.st.invocations++
	}
	// Draw the service time before admission, so that the same request
	// gets the same demand whatever a configuration decides about it.
	service := int64(a.Service)
	if service <= 0 {
		service = int64(sample(f.spec.Service, f.rng))
	}
	var ticket loadshed.Ticket
	if dp.shed != nil {
		caller := a.Caller
		if caller == "" {
			caller = f.spec.ID
		}
		t, err := dp.shed.Admit(s.time(), caller, loadshed.Default)
		if err != nil {
			if counted {
				f.st.shed++
				dp.st.shed++
			}
			return
		}
		ticket = t
	}
	if f.limit != nil && f.limit.Acquire() != nil {
		ticket.Done(s.time(), loadshed.Ignored)
		if counted {
			f.st.limited++
		}
		return
	}
	r := s.newRequest(f)
	r.arrival, r.service, r.ticket, r.counted, r.limited = int64(a.At), service, ticket, counted, f.limit != nil
	s.sched.wake(f)
	f.st.peakHeld = max(f.st.peakHeld, f.held+f.nQueued+1)
	if f.nQueued == 0 {
		rt, err := s.router.Pick(f.spec.ID)
		if err == nil {
			s.begin(r, rt)
			s.observe(f)
			return
		}
		if errors.Is(err, router.ErrNoRoute) {
			// As the dataplane: waiting for a cold start is not queueing
			// behind an overloaded dataplane.
			s.startTicket(r)
		}
	} else if len(f.ready) == 0 {
		s.startTicket(r)
	}
	s.wait(f, r)
}

// wait queues r for capacity and makes sure cold starts are under way.
func (s *sim) wait(f *function, r *request) {
	r.waited = true
	if s.enqueue(f, r) {
		s.observe(f)
		s.wantCapacity(f)
	}
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

// enqueue puts r in f's wait queue, or refuses it when the queue is full;
// it reports whether r waits.
func (s *sim) enqueue(f *function, r *request) bool {
	if f.nQueued >= f.spec.MaxQueue {
		r.ticket.Done(s.time(), loadshed.Dropped)
		if r.counted {
			f.st.queueFull++
		}
		s.recycle(r)
		return false
	}
	r.state, r.inst, r.route = stQueued, nil, router.Route{}
	f.queue.push(queued{r, r.gen})
	f.nQueued++
	s.queued++
	s.schedule(event{at: s.now + int64(f.spec.QueueTimeout), kind: evQueueTimeout, req: r, gen: r.gen})
	return true
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
		s.limits.timedOut(s, f)
	}
	s.recycle(r) // its queue entry is now stale
	s.observe(f)
}

// begin gives r the slot rt holds on an instance. A request sent to a dead
// instance fails at once, as the agent (or the network) answers it.
func (s *sim) begin(r *request, rt router.Route) {
	inst := s.insts[rt.Instance()]
	f := r.fn
	r.route, r.inst, r.state = rt, inst, stHolding
	s.startTicket(r)
	if inst.idle {
		inst.idle = false
		s.account(f, 0, -1)
	}
	r.slot = len(inst.reqs)
	inst.reqs = append(inst.reqs, r)
	f.held++
	s.held++
	if inst.dead {
		o := router.Exited // the agent answers function_exited
		if inst.node.down {
			o = router.ConnectFailed
		}
		s.fail(r, o)
		return
	}
	if inst.running < f.spec.Parallelism {
		s.execute(inst, r)
	} else {
		inst.local.push(localEntry{r, r.attempt})
	}
}

func (s *sim) execute(inst *instance, r *request) {
	inst.running++
	r.running = true
	r.execAt = s.now
	d := int64(float64(r.service) / (inst.node.speed * inst.speed))
	if s.cfg.Hop != nil {
		d += int64(sample(s.cfg.Hop, s.rng))
	}
	s.schedule(event{at: s.now + d, kind: evComplete, req: r, gen: r.gen, aux: int64(r.attempt)})
}

// leave takes r off its instance (it completed or failed there): the next
// request waiting inside starts, and a gone instance left empty
// terminates. It returns whether the instance is still serving.
func (s *sim) leave(r *request) {
	inst, f := r.inst, r.fn
	if r.running {
		r.running = false
		inst.running--
		for {
			next, ok := inst.local.pop()
			if !ok {
				break
			}
			if next.r.attempt == next.attempt && next.r.inst == inst && next.r.state == stHolding {
				s.execute(inst, next.r)
				break
			}
		}
	}
	last := len(inst.reqs) - 1
	inst.reqs[r.slot] = inst.reqs[last]
	inst.reqs[r.slot].slot = r.slot
	inst.reqs[last] = nil
	inst.reqs = inst.reqs[:last]
	f.held--
	s.held--
	inst.lastUsed = s.now
	r.attempt++ // its events and entries inside the instance are stale
	r.inst = nil
	if len(inst.reqs) == 0 {
		switch {
		case inst.draining || inst.gone:
			s.terminate(inst)
		default:
			inst.idle = true
			s.account(f, 0, 1)
		}
	}
}

// complete ends r's execution: the route is released (the router hands the
// slot to the function's longest waiter, if any), and the instance turns
// idle or, when draining, terminates.
func (s *sim) complete(r *request) {
	inst, f := r.inst, r.fn
	if r.counted {
		cold := r.waited && inst.readyAt >= r.arrival
		f.st.record(s.now-r.arrival, r.execAt-r.arrival, cold)
		inst.node.served++
		inst.node.busyNs += s.now - r.execAt
	}
	r.ticket.Done(s.time(), loadshed.Success)
	rt := r.route
	s.leave(r)
	s.recycle(r)
	rt.Release(s.time(), router.Success)
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
// applies the answer: cold starts to scale up, draining to scale down. It
// returns when f may next be asked (math.MaxInt64: only after a request
// or an instance change), or false when f must be asked at the next tick.
func (s *sim) decide(f *function) (int64, bool) {
	now := s.time()
	o := f.meter.Observation(now)
	o.Instances = len(f.ready) + f.starting
	o.InstanceLimit = f.spec.Concurrency
	o.InFlight = f.held
	o.Queued = f.nQueued
	d := f.scaler.Decide(now, o)
	// A custom policy is held to the spec's bounds, as in the dataplane.
	want := min(max(d.Desired, f.spec.MinInstances), f.spec.MaxInstances)
	if d.Desired > f.spec.MaxInstances && s.warm {
		s.limits.maxInstancesCaps++
	}
	// The dataplane's own round: which to drain, how many to start.
	reps := s.replicas[:0]
	for _, in := range f.ready {
		reps = append(reps, concurrency.Replica{Current: true, Ready: true, InFlight: len(in.reqs),
			ReadyAt: Epoch.Add(time.Duration(in.readyAt)), LastUsed: Epoch.Add(time.Duration(in.lastUsed))})
	}
	s.replicas = reps
	starting := f.starting
	plan := concurrency.PlanRound(now, want, starting, reps, s.cfg.ScaleDownDelay)
	for n := f.starting; n < plan.Start; n++ {
		s.startCold(f)
	}
	if len(plan.Drain) > 0 {
		victims := make([]*instance, len(plan.Drain))
		for i, k := range plan.Drain {
			victims[i] = f.ready[k]
		}
		for _, in := range victims {
			s.drain(f, in)
		}
		return 0, false
	}
	if f.held > 0 || f.nQueued > 0 || f.starting > starting {
		return 0, false
	}
	// Nothing happened this round; the next rounds do the same until the
	// policy's answer changes, the instances change (which wakes f), or
	// an excess instance settles and may be drained.
	wake := int64(math.MaxInt64)
	if delay := int64(s.cfg.ScaleDownDelay); delay > 0 && want < len(f.ready)+f.starting {
		for _, in := range f.ready {
			if t := in.readyAt + delay; t > s.now {
				wake = min(wake, t)
			}
		}
	}
	switch {
	case f.quiet != nil:
		switch q := f.quiet.QuietUntil(now, o, d, f.meter.Idle(now)); {
		case q.IsZero():
		case q.After(now):
			wake = min(wake, int64(q.Sub(Epoch)))
		default:
			return 0, false
		}
	case s.sched.dormantEvery > 1 && f.dormant():
		wake = min(wake, s.sched.nextDormantTick(s))
	default:
		return 0, false
	}
	if wake != math.MaxInt64 {
		wake = toTick(wake, int64(s.cfg.ScaleInterval))
	}
	return wake, true
}

// drain takes inst out of the routes; it terminates once its requests
// have finished.
func (s *sim) drain(f *function, inst *instance) {
	now := s.time()
	s.router.Remove(now, inst.li, "scale down")
	_ = inst.li.Transition(now, lifecycle.Draining, "scale down")
	inst.draining = true
	f.ready = slices.DeleteFunc(f.ready, func(x *instance) bool { return x == inst })
	if len(inst.reqs) == 0 {
		s.terminate(inst)
	}
}

func (s *sim) terminate(inst *instance) {
	if inst.ended {
		return
	}
	inst.ended = true
	_ = inst.li.Transition(s.time(), lifecycle.Terminated, "drained")
	delete(s.insts, inst.li)
	inst.node.remove(inst)
	dIdle := 0
	if inst.idle {
		inst.idle, dIdle = false, -1
	}
	s.account(inst.fn, -1, dIdle)
	if s.warm {
		inst.fn.st.terminated++
	}
}

// String names the instance in panics of the simulator's own bugs.
func (inst *instance) String() string { return fmt.Sprintf("instance %s", inst.li.ID) }
