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
		for _, pl := range s.pools {
			p.IdlePods += len(pl.idle)
		}
		tl.cold = 0
		tl.points = append(tl.points, p)
		tl.next += tl.step
		if len(tl.points) >= MaxTimelinePoints {
			tl.compact()
		}
	}
}

// compact merges pairs of points: the later time, the larger level, the
// sum of the cold starts.
func (tl *timeline) compact() {
	pts := tl.points
	out := pts[:0]
	for i := 0; i+1 < len(pts); i += 2 {
		a, b := pts[i], pts[i+1]
		out = append(out, TimelinePoint{
			T:          b.T,
			Instances:  max(a.Instances, b.Instances),
			Idle:       max(a.Idle, b.Idle),
			InFlight:   max(a.InFlight, b.InFlight),
			Queued:     max(a.Queued, b.Queued),
			IdlePods:   max(a.IdlePods, b.IdlePods),
			ColdStarts: a.ColdStarts + b.ColdStarts,
		})
	}
	if len(pts)%2 == 1 {
		last := pts[len(pts)-1]
		out = append(out, last)
	}
	tl.points = out
	tl.step *= 2
	tl.next = int64(tl.points[len(tl.points)-1].T) + tl.step
}
