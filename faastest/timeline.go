package faastest

import "time"

// timeline samples the run's state at regular virtual times, doubling its
// step (and merging pairs of points) whenever it would exceed
// MaxTimelinePoints.
type timeline struct {
	step   int64
	next   int64
	cold   int // cold starts since the last point
	points []TimelinePoint
}

// sample records a point for every sampling time up to and including t,
// with the state that held before t.
func (tl *timeline) sample(s *sim, t int64) {
	for tl.next <= t {
		p := TimelinePoint{
			T:          time.Duration(tl.next),
			Instances:  s.total.alive,
			Idle:       s.total.idle,
			InFlight:   s.held,
			Queued:     s.queued,
			ColdStarts: tl.cold,
		}
		for _, dp := range s.dps {
			for _, pl := range dp.pools {
				p.IdlePods += len(pl.idle)
			}
		}
		tl.cold = 0
		tl.points = append(tl.points, p)
		tl.next += tl.step
		if len(tl.points) >= MaxTimelinePoints {
			tl.compact()
		}
	}
}

// finish adds a last point at the end of the run, t, unless one is there
// already, so that the timeline covers the whole run and counts every cold
// start.
func (tl *timeline) finish(s *sim, t int64) {
	tl.sample(s, t)
	if n := len(tl.points); n > 0 && int64(tl.points[n-1].T) == t {
		return
	}
	tl.next = t
	tl.sample(s, t)
	tl.next = t + tl.step
}

// compact merges pairs of points and doubles the step.
func (tl *timeline) compact() {
	tl.points = coarsen(tl.points, 2)
	tl.step *= 2
	tl.next = int64(tl.points[len(tl.points)-1].T) + tl.step
}

// coarsen merges runs of k points into one: the last time, the largest
// level, the sum of the cold starts (so none is lost and no peak is
// flattened). A last run shorter than k is merged the same way.
func coarsen(pts []TimelinePoint, k int) []TimelinePoint {
	if k <= 1 {
		return pts
	}
	out := pts[:0:0]
	for i := 0; i < len(pts); i += k {
		m := pts[i]
		for _, p := range pts[i+1 : min(i+k, len(pts))] {
			m = TimelinePoint{
				T:          p.T,
				Instances:  max(m.Instances, p.Instances),
				Idle:       max(m.Idle, p.Idle),
				InFlight:   max(m.InFlight, p.InFlight),
				Queued:     max(m.Queued, p.Queued),
				IdlePods:   max(m.IdlePods, p.IdlePods),
				ColdStarts: m.ColdStarts + p.ColdStarts,
			}
		}
		out = append(out, m)
	}
	return out
}
