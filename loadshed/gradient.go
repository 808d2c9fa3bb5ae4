package loadshed

import (
	"math"
	"time"
)

// gradient is the adaptive concurrency limit, a pure state machine fed once
// per control interval.
//
// Each update takes the mean latency of the completions since the last
// update (at least MinSamples of them) and compares it with the no-load
// latency: with ratio = noLoad × (1+Tolerance) / sample, the next limit is
// max(max(limit, in flight) × ratio, limit / 2) + √limit when ratio < 1,
// limit + √limit otherwise; smoothed and clamped. The √limit term is the queue the limit
// allows: at equilibrium the sampled latency sits a little above
// (1+Tolerance) × noLoad. When fewer than half of the limit's slots were
// used, the limit may shrink but does not grow (an idle server proves
// nothing about its capacity).
//
// The no-load latency is the minimum, over MinRTTWindow, of a smoothed
// series of mean service times: latencies less the queueing delays that
// [Ticket.Started] reports, so that the queue the limit allows never
// leaks into the baseline it is measured against. (A single interval's
// mean is too noisy: its minimum over a window would sit well below the
// true mean; hence the smoothing.) It is kept
// in two half-window buckets: the older half is forgotten every half
// window, so a latency that really rose is re-measured passively, from
// the traffic that flows anyway, instead of by cutting the limit to a few
// requests as Envoy's probe does — no burst of rejections. When queueing
// delays are reported, a service time that stays above the tolerance for
// warmUpdates updates replaces the minimum at once.
type gradient struct {
	cfg AdaptiveConfig

	limit float64

	accN   int     // completions accumulated toward the next update
	accSum float64 // their latencies, in seconds
	accSvc float64 // their latencies less their queueing delays, seconds
	drops  int     // dropped outcomes accumulated

	congested bool // the last update's latency exceeded the tolerance

	smoothed float64 // EMA of update means, seconds; 0 before the first
	warm     int     // updates of smoothed since it (re)started
	slow     int     // consecutive updates with smoothed above the tolerance
	cur, old float64 // windowed minimum of smoothed, in two buckets
	curStart int64   // start of the current bucket, ns
}

const (
	rttEMA      = 0.25 // weight of a new mean in the smoothed latency
	dropBackoff = 0.9
	minGradient = 0.5
	// warmUpdates is how many updates the smoothed latency takes before
	// it may set the minimum. Right after start-up, the first requests
	// to complete are the short ones (the long ones are still running):
	// the first means are biased low, and a minimum would keep that bias
	// for a whole window.
	warmUpdates = 5
)

func newGradient(cfg AdaptiveConfig) *gradient {
	return &gradient{cfg: cfg, limit: float64(cfg.InitialLimit), cur: math.Inf(1), old: math.Inf(1)}
}

// Limit returns the limit in force.
func (g *gradient) Limit() int { return int(g.limit) }

// Congested reports whether the latest update found the latency above
// the tolerance: the evidence that makes reaching the limit an overload
// rather than a limit that has not grown yet.
func (g *gradient) Congested() bool { return g.congested }

// NoLoad returns the no-load latency estimate (0 before any).
func (g *gradient) NoLoad() time.Duration {
	m := min(g.cur, g.old)
	if math.IsInf(m, 1) {
		return 0
	}
	return time.Duration(m * 1e9)
}

// update feeds one interval ending at t (ns): n completions whose
// latencies sum to sum seconds and, less their queueing delays, to service
// seconds; drops dropped outcomes; and the mean number in flight during the
// interval. waits tells whether queueing delays are reported at all.
func (g *gradient) update(t int64, n int, sum, service float64, drops int, inFlight float64, waits bool) {
	g.accN += n
	g.accSum += sum
	g.accSvc += service
	g.drops += drops
	if g.drops > 0 && g.accN+g.drops >= g.cfg.MinSamples/2 {
		// A timeout or a downstream refusal is a strong signal: back off
		// at once rather than wait for latency samples.
		g.limit = g.clamp(g.limit * dropBackoff)
		g.drops = 0
	}
	if g.accN < g.cfg.MinSamples {
		return
	}
	sample := g.accSum / float64(g.accN)
	svc := g.accSvc / float64(g.accN)
	g.accN, g.accSum, g.accSvc = 0, 0, 0
	if !(sample > 0) {
		return
	}
	if svc > 0 {
		g.observe(t, svc, waits)
	}

	noLoad := min(g.cur, g.old)
	ratio := noLoad * (1 + g.cfg.Tolerance) / sample
	g.congested = ratio < 1
	// The latency reflects what was in flight, which may exceed the limit
	// (the first burst of an overload is admitted before the detector
	// turns on): scale that by the gradient, or a backlog would crush the
	// limit far below what the server can run, and growing back by
	// √limit takes long. One update shrinks the limit by half at most.
	next := g.limit
	if ratio < 1 {
		next = max(max(g.limit, inFlight)*ratio, g.limit*minGradient)
	}
	next += math.Sqrt(g.limit)
	if inFlight < g.limit/2 {
		next = min(next, g.limit) // not using the limit: no evidence to grow
	}
	g.limit = g.clamp(g.limit*(1-g.cfg.Smoothing) + next*g.cfg.Smoothing)
}

// observe adds a latency mean to the smoothed series and its windowed
// minimum.
func (g *gradient) observe(t int64, sample float64, waits bool) {
	switch half, gap := int64(g.cfg.MinRTTWindow)/2, t-g.curStart; {
	case g.smoothed == 0 || gap >= 2*half:
		// The start, or no update for a whole window (the traffic
		// stopped): both halves are stale; warm up again.
		g.smoothed, g.warm = sample, 0
		g.old, g.cur, g.curStart = math.Inf(1), math.Inf(1), t
	case gap >= half:
		g.old, g.cur, g.curStart = g.cur, math.Inf(1), t
	}
	g.smoothed += rttEMA * (sample - g.smoothed)
	if g.warm < warmUpdates {
		g.warm++
		return
	}
	// With queueing delays reported, the service time excludes the queue
	// the limit allows, so a service time that stays above the tolerance
	// means the function itself got slower: re-measure at once rather
	// than crush the limit until the window forgets the old minimum.
	// (Without them the rise may be our own queue; only the window may
	// forget then.)
	if noLoad := min(g.cur, g.old); waits && g.smoothed > noLoad*(1+g.cfg.Tolerance) {
		if g.slow++; g.slow >= warmUpdates {
			g.old, g.cur, g.curStart, g.slow = math.Inf(1), g.smoothed, t, 0
		}
	} else {
		g.slow = 0
	}
	g.cur = min(g.cur, g.smoothed)
}

func (g *gradient) clamp(l float64) float64 {
	return min(max(l, float64(g.cfg.MinLimit)), float64(g.cfg.MaxLimit))
}
