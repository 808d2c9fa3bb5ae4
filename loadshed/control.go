package loadshed

import (
	"math"
	"time"
)

// control runs the control step for the interval(s) that ended by t (ns
// since base). One goroutine runs it at a time; a caller that finds it
// running goes on, since the runner does the work.
func (s *Shedder) control(now time.Time, t int64) {
	if !s.ctl.TryLock() {
		return
	}
	defer s.ctl.Unlock()
	next := s.next.Load()
	if t < next {
		return
	}
	ended := (t-next)/s.interval + 1
	s.next.Store(next + ended*s.interval)

	arr := s.arrivals.Swap(0)
	comp := s.completed.Swap(0)
	service := s.service.Swap(0)
	drops := int(s.drops.Swap(0))
	sojourn := s.minSojourn.Swap(math.MaxInt64)

	// The average in flight seen by arrivals; Poisson arrivals see time
	// averages (PASTA), and it costs one atomic add per request.
	mean := float64(s.inFlight.Load())
	if n := arr >> 40; n > 0 {
		mean = float64(arr&sumMask) / float64(n)
	}
	limit := float64(s.limit.Load())

	// In flight against the limit. Reaching a learned limit counts only
	// with latency above the tolerance: at start-up, or after a rise in
	// traffic, the limit may simply not have grown yet. Once shedding,
	// the requests held at the limit keep it on until they fall below
	// LowWater of it.
	over := false
	if s.on {
		over = mean >= limit*s.cfg.LowWater
	} else if mean >= limit {
		over = s.grad == nil || s.grad.Congested() || (s.cfg.Capacity > 0 && mean >= float64(s.cfg.Capacity))
	}
	if s.target > 0 && sojourn != math.MaxInt64 && sojourn > s.target {
		over = true // CoDel: even the shortest wait in the interval was too long
	}
	for _, sig := range s.cfg.Signals {
		if sig.Overloaded(now) {
			over = true
		}
	}
	s.detect(t, over, mean, limit)

	newLimit := s.cfg.Capacity
	if s.grad != nil {
		s.grad.update(t, int(comp>>40), float64(comp&sumMask)/1e6, float64(service)/1e6, drops, mean, s.waits.Load())
		newLimit = s.grad.Limit()
		if s.cfg.Capacity > 0 {
			newLimit = min(newLimit, s.cfg.Capacity)
		}
	}
	s.limit.Store(int64(newLimit))

	level := s.accounts.rotate(int(min(ended, math.MaxInt32)), float64(newLimit))
	s.level.Store(math.Float64bits(level))
}

// detect is the detector's state machine: on as soon as an interval is
// overloaded, off after CoolOff without one.
func (s *Shedder) detect(t int64, over bool, mean, limit float64) {
	switch {
	case over:
		s.lastOver = t
		if !s.on {
			s.on = true
			s.flips++
			s.cfg.Logger.Info("loadshed: overload, shedding on", "in_flight", mean, "limit", limit)
		}
	case s.on && t-s.lastOver >= s.coolOff:
		s.on = false
		s.flips++
		s.cfg.Logger.Info("loadshed: overload cleared, shedding off", "in_flight", mean, "limit", limit)
	}
	s.shedding.Store(s.on)
}
