package faastest

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Dist is a distribution of durations: service times, pod creation, code
// fetch, process start and init latencies. Sample draws from r, the
// simulator's (or a fake's) seeded generator, so that a run is reproducible.
// Implementations must be deterministic given r and must not keep r.
type Dist interface {
	// Sample returns one value (never negative).
	Sample(r *rand.Rand) time.Duration
	// Mean returns the distribution's mean, for reports and for checking
	// a simulation against theory.
	Mean() time.Duration
	// String describes the distribution, e.g. "exp(100ms)".
	String() string
}

// Const returns the distribution that is always d (0 when d is negative).
func Const(d time.Duration) Dist { return constDist(max(d, 0)) }

type constDist time.Duration

func (c constDist) Sample(*rand.Rand) time.Duration { return time.Duration(c) }
func (c constDist) Mean() time.Duration             { return time.Duration(c) }
func (c constDist) String() string                  { return time.Duration(c).String() }

// Exp returns the exponential distribution with the given mean: the service
// time of the M/M/1 model, memoryless.
func Exp(mean time.Duration) Dist { return expDist(max(mean, 0)) }

type expDist time.Duration

func (e expDist) Sample(r *rand.Rand) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(e))
}
func (e expDist) Mean() time.Duration { return time.Duration(e) }
func (e expDist) String() string      { return fmt.Sprintf("exp(%v)", time.Duration(e)) }

// LogNormal returns the log-normal distribution with the given median and
// shape sigma (the standard deviation of the logarithm): the usual model of
// start-up and execution times, whose tails are longer than an
// exponential's. Its mean is median × exp(sigma²/2).
func LogNormal(median time.Duration, sigma float64) Dist {
	return logNormalDist{median: float64(max(median, 0)), sigma: math.Abs(sigma)}
}

type logNormalDist struct{ median, sigma float64 }

func (l logNormalDist) Sample(r *rand.Rand) time.Duration {
	v := l.median * math.Exp(l.sigma*r.NormFloat64())
	return time.Duration(min(v, math.MaxInt64/2))
}
func (l logNormalDist) Mean() time.Duration {
	return time.Duration(l.median * math.Exp(l.sigma*l.sigma/2))
}
func (l logNormalDist) String() string {
	return fmt.Sprintf("lognormal(median %v, sigma %g)", time.Duration(l.median), l.sigma)
}

// Uniform returns the uniform distribution on [lo, hi) (hi is raised to lo
// when below it).
func Uniform(lo, hi time.Duration) Dist {
	lo = max(lo, 0)
	return uniformDist{lo: lo, hi: max(hi, lo)}
}

type uniformDist struct{ lo, hi time.Duration }

func (u uniformDist) Sample(r *rand.Rand) time.Duration {
	if u.hi == u.lo {
		return u.lo
	}
	return u.lo + time.Duration(r.Int64N(int64(u.hi-u.lo)))
}
func (u uniformDist) Mean() time.Duration { return u.lo + (u.hi-u.lo)/2 }
func (u uniformDist) String() string      { return fmt.Sprintf("uniform(%v, %v)", u.lo, u.hi) }

// sample draws from d, treating a nil distribution as zero and clamping
// negative values that a user's implementation might return.
func sample(d Dist, r *rand.Rand) time.Duration {
	if d == nil {
		return 0
	}
	return max(d.Sample(r), 0)
}

// Percentile is one point of a distribution's quantile function: P
// percent of the values are at most Value.
type Percentile struct {
	P     float64
	Value time.Duration
}

// FromPercentiles returns the distribution whose quantile function runs
// linearly between the given points: what a trace that publishes
// percentiles of execution times (the Azure Functions 2019 dataset) says
// of a function. Values below the first point's P are its Value, values
// above the last point's P the last Value. It returns an error wrapping
// ErrTrace unless the points have P in [0, 100], strictly increasing,
// and non-negative, non-decreasing values.
func FromPercentiles(points []Percentile) (Dist, error) {
	if err := checkPercentiles(points); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTrace, err)
	}
	return fromPercentiles(points), nil
}

func checkPercentiles(points []Percentile) error {
	if len(points) == 0 {
		return errors.New("no percentiles")
	}
	for i, p := range points {
		switch {
		case !(p.P >= 0 && p.P <= 100):
			return fmt.Errorf("percentile %v not in [0, 100]", p.P)
		case p.Value < 0:
			return fmt.Errorf("negative value at percentile %v", p.P)
		case i > 0 && !(p.P > points[i-1].P):
			return fmt.Errorf("percentiles not increasing (%v after %v)", p.P, points[i-1].P)
		case i > 0 && p.Value < points[i-1].Value:
			return fmt.Errorf("values decrease from percentile %v to %v", points[i-1].P, p.P)
		}
	}
	return nil
}

func fromPercentiles(points []Percentile) Dist {
	d := percentileDist{points: slices.Clone(points)}
	// The mean: the integral of the quantile function, flat outside.
	var mean float64
	first, last := points[0], points[len(points)-1]
	mean += first.P / 100 * float64(first.Value)
	mean += (100 - last.P) / 100 * float64(last.Value)
	for i := 1; i < len(points); i++ {
		a, b := points[i-1], points[i]
		mean += (b.P - a.P) / 100 * (float64(a.Value) + float64(b.Value)) / 2
	}
	d.mean = time.Duration(mean)
	return d
}

type percentileDist struct {
	points []Percentile
	mean   time.Duration
}

func (d percentileDist) Sample(r *rand.Rand) time.Duration {
	u := r.Float64() * 100
	pts := d.points
	i, _ := slices.BinarySearchFunc(pts, u, func(p Percentile, u float64) int { return cmp.Compare(p.P, u) })
	switch {
	case i == 0:
		return pts[0].Value
	case i == len(pts):
		return pts[len(pts)-1].Value
	}
	a, b := pts[i-1], pts[i]
	return a.Value + time.Duration((u-a.P)/(b.P-a.P)*float64(b.Value-a.Value))
}

func (d percentileDist) Mean() time.Duration { return d.mean }

func (d percentileDist) String() string {
	var b strings.Builder
	b.WriteString("percentiles(")
	for i, p := range d.points {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "p%g %v", p.P, p.Value)
	}
	b.WriteString(")")
	return b.String()
}
