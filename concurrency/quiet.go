package concurrency

import (
	"math"
	"time"
)

// Quiet is an optional interface of a [ScalingPolicy]: a policy that
// implements it tells its caller how long its answer will stay the same
// for a function with nothing to do, so that the caller skips the rounds
// in between. A dataplane or a simulator with tens of thousands of
// functions, most of them idle, then pays for the few functions that have
// traffic or a timer due (the end of a keep-alive, a pre-warm), not for
// every function at every round.
type Quiet interface {
	// QuietUntil is called after Decide(now, o) returned d, with what the
	// function's meter will read from now on if no request arrives (see
	// [Meter.Idle]). It returns the time until which Decide would
	// return d.Desired again at every round, provided no request arrives
	// and the function's instances do not change (none becomes Ready, is
	// lost or is drained): the caller may skip the rounds before that
	// time, and decides again at the first round at or after it, at the
	// next request, and at the next change of the instances. The zero
	// time means for ever (until a request or a change of the instances);
	// a time at or before now promises nothing (decide at the next
	// round). It must be a pure function of its arguments and the
	// policy's state, and must not change that state.
	QuietUntil(now time.Time, o Observation, d Decision, m IdleMeter) time.Time
}

// IdleMeter is what a meter will read if no request arrives from now on:
// its averages can only fall, never above MaxStable and MaxPanic, and are
// zero from Zero on (Zero is at or before now when they are zero already).
type IdleMeter struct {
	MaxStable, MaxPanic float64
	Zero                time.Time
}

// QuietUntil implements [Quiet]. With no demand, the KPA's answer follows
// the stable average only through ceil(average / target), bounded below
// by its scale-down rate: when the meter's bounds keep that term constant,
// or at one instance until the averages reach zero, and no panic can
// start, its answer is fixed until the averages reach zero and then until
// the keep-alive runs out (for the last instance), or for ever.
func (p *KPA) QuietUntil(now time.Time, o Observation, d Decision, m IdleMeter) time.Time {
	if o.InFlight > 0 || o.Queued > 0 || d.Panicking {
		return now
	}
	cur := max(o.Instances, 0)
	ready := float64(max(cur, 1))
	target := float64(max(o.InstanceLimit, 1)) * p.cfg.TargetUtilization
	if math.Ceil(max(m.MaxPanic, 0)/target)/ready >= p.cfg.PanicThreshold {
		return now // the panic window could still start a panic
	}
	maxWant := math.Ceil(max(m.MaxStable, 0) / target)
	down := math.Floor(ready / p.cfg.MaxScaleDownRate)
	// The keep-alive keeps the last instance once the stable term is 0.
	keepAliveEnd := func() time.Time {
		if cur == 0 || p.cfg.MinInstances >= 1 {
			return time.Time{}
		}
		p.mu.Lock()
		idleSince := o.LastActive
		if idleSince.IsZero() {
			idleSince = p.firstSeen
		}
		p.mu.Unlock()
		return idleSince.Add(p.cfg.KeepAlive)
	}
	var until time.Time
	switch {
	case maxWant <= down && down > 0:
		return time.Time{} // the scale-down rate's term, for ever
	case maxWant == 0:
		until = keepAliveEnd() // the stable term is 0 already
	case maxWant == 1 && down == 0:
		// One instance while the average is above zero, then the
		// keep-alive.
		until = m.Zero
		if ka := keepAliveEnd(); ka.After(until) {
			until = ka
		}
	default:
		return now
	}
	if !until.After(now) {
		return time.Time{}
	}
	return until
}

var _ Quiet = (*KPA)(nil)
