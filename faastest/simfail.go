package faastest

import (
	"errors"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// failStats count what the failure model did.
type failStats struct {
	crashes, nodesLost, coldFailed, podsLost int64
}

// hours returns an exponential time of mean 1/rate hours, in nanoseconds,
// capped so that it never overflows.
func (s *sim) hours(rate float64) int64 {
	d := s.failRng.ExpFloat64() / rate * float64(time.Hour)
	return int64(min(d, float64(1<<62)))
}

// scheduleFailures schedules the first loss of every node.
func (s *sim) scheduleFailures() {
	if rate := s.cfg.Failures.NodeLossRate; rate > 0 {
		for _, n := range s.nodes {
			s.schedule(event{at: s.now + s.hours(rate), kind: evNodeLoss, node: n})
		}
	}
}

// scheduleCrash schedules the crash of a new instance.
func (s *sim) scheduleCrash(inst *instance) {
	if rate := s.cfg.Failures.InstanceCrashRate; rate > 0 {
		s.schedule(event{at: s.now + s.hours(rate), kind: evCrash, inst: inst})
	}
}

// crash kills inst: the requests it holds fail and are retried by the
// router's rules; it stays in the routes (requests sent to it fail fast)
// until the router or the health monitor takes it out.
func (s *sim) crash(inst *instance) {
	if inst.dead || inst.ended {
		return
	}
	inst.dead = true
	if s.warm {
		s.fails.crashes++
	}
	for len(inst.reqs) > 0 {
		r := inst.reqs[len(inst.reqs)-1]
		o := router.Exited // waiting inside the instance: never reached the function
		if r.running {
			o = router.InstanceFailed
		}
		s.fail(r, o)
	}
	s.schedule(event{at: s.now + int64(s.cfg.Failures.Detect), kind: evDetect, inst: inst})
	s.sched.wake(inst.fn)
}

// fail ends r's attempt on its instance with outcome o, as the dataplane's
// send does: the route is released with o (the breaker counts it; Exited
// and Reassigned take the instance out and ask for a replacement), then
// the request is retried through router.Retry when that is safe and within
// budget; one that never reached the function and finds no other instance
// waits for capacity as a new request would; otherwise it fails.
func (s *sim) fail(r *request, o router.Outcome) {
	f, rt := r.fn, r.route
	s.leave(r)
	r.route = router.Route{}
	rt.Release(s.time(), o)
	idem := f.spec.Idempotent
	if !router.Retryable(o, idem) {
		s.failed(r)
		return
	}
	next, err := s.router.Retry(rt, o, idem)
	if err != nil && !o.Reached() && (errors.Is(err, router.ErrNoRoute) || errors.Is(err, router.ErrNoCapacity)) {
		if r.counted {
			f.st.retried++
		}
		s.wait(f, r)
		return
	}
	if err != nil {
		s.failed(r)
		return
	}
	if r.counted {
		f.st.retried++
	}
	s.begin(r, next)
}

// failed ends a request that failed for good.
func (s *sim) failed(r *request) {
	r.ticket.Done(s.time(), loadshed.Failure)
	if r.counted {
		r.fn.st.failed++
	}
	f := r.fn
	s.recycle(r)
	s.observe(f)
}

// replace is the router's Hooks.Replace: the router took the instance out
// (its function process exited); the dataplane starts one more cold start.
func (s *sim) replace(li *lifecycle.Instance, _ string) {
	inst := s.insts[li]
	if inst == nil {
		return
	}
	s.retire(inst)
	s.startCold(inst.fn)
}

// detected is the health monitor's verdict on a dead instance: out of the
// routes; the scaling policy replaces it at its next decision.
func (s *sim) detected(inst *instance) {
	if inst.ended || inst.gone {
		return
	}
	s.router.Remove(s.time(), inst.li, "health checks failed")
	s.retire(inst)
}

// retire takes inst out of its function's instances for good; it
// terminates once nothing holds a slot on it.
func (s *sim) retire(inst *instance) {
	if inst.gone {
		return
	}
	inst.gone = true
	f := inst.fn
	for i, x := range f.ready {
		if x == inst {
			f.ready = append(f.ready[:i], f.ready[i+1:]...)
			break
		}
	}
	if len(inst.reqs) == 0 {
		s.terminate(inst)
	}
	s.sched.wake(f)
}

// loseNode takes a worker node down: its instances crash, its idle pods
// and its code cache are gone, its cold starts in progress fail.
func (s *sim) loseNode(n *node) {
	if n.down {
		return
	}
	n.down = true
	n.epoch++
	if s.warm {
		s.fails.nodesLost++
	}
	for len(n.insts) > 0 {
		inst := n.insts[len(n.insts)-1]
		n.remove(inst)
		s.crash(inst)
	}
	for _, dp := range s.dps {
		for _, p := range dp.pools {
			p.dropNode(s, n)
		}
	}
	s.schedule(event{at: s.now + int64(s.cfg.Failures.Downtime), kind: evNodeBack, node: n})
	s.replenish()
}

// nodeBack brings a node back, empty, and schedules its next loss.
func (s *sim) nodeBack(n *node) {
	n.down = false
	n.cache = newByteLRU(s.cfg.Code.NodeCacheBytes)
	s.schedule(event{at: s.now + s.hours(s.cfg.Failures.NodeLossRate), kind: evNodeLoss, node: n})
	s.replenish()
}
