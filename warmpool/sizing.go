package warmpool

import (
	"fmt"
	"math"
	"time"
)

// SizingPolicy decides how many idle pods a runtime's pool keeps. It is a
// deterministic state machine: it sees takes and pod creations as they
// happen, and answers for a given instant; it reads no clock and starts no
// goroutine, so a simulation replays it on virtual time. The Manager keeps
// one per runtime and calls it under its lock: implementations need not be
// safe for concurrent use and must be fast.
type SizingPolicy interface {
	// ObserveTake records that a pod was taken at now.
	ObserveTake(now time.Time)
	// ObserveCreate records that creating a pod took latency, ending at
	// now.
	ObserveCreate(now time.Time, latency time.Duration)
	// Target returns the number of idle pods wanted at now.
	Target(now time.Time) int
}

// EWMASizingConfig configures [NewEWMASizing].
type EWMASizingConfig struct {
	// Min and Max bound the target. 0 <= Min <= Max; Max > 0.
	Min, Max int
	// Interval is the width of the buckets in which takes are counted;
	// each closed bucket's rate updates the average. Default 1 second.
	Interval time.Duration
	// Alpha is the weight of the newest bucket in the take-rate average,
	// in (0, 1]. Default 0.2 (the average forgets half of the past in
	// about three intervals).
	Alpha float64
	// LatencyAlpha is the weight of the newest creation latency in its
	// average, in (0, 1]. Default 0.2.
	LatencyAlpha float64
	// InitialLatency is the creation latency assumed before the first one
	// is observed. Default 1 second.
	InitialLatency time.Duration
	// Safety multiplies the estimate, to absorb bursts and the error of
	// the averages. Default 2; must be >= 1.
	Safety float64
}

// EWMASizing is the default [SizingPolicy]. Its target is the number of
// takes expected while one pod is being created, by Little's law: take
// rate × creation latency, times a safety factor, rounded up and clamped to
// [Min, Max]. Both factors are exponentially weighted moving averages: the
// take rate over fixed intervals, the latency over creations. A pool sized
// this way refills as fast as it drains at the recent rate, which is the
// idea of reactive prewarming; the waiting Takes themselves trigger
// creations beyond the target, so a burst above it costs a wait, not a
// failure.
type EWMASizing struct {
	cfg EWMASizingConfig

	started     bool
	bucketStart time.Time
	count       int
	rate        float64 // takes per second
	latency     time.Duration
	seenLatency bool
}

// NewEWMASizing returns the default sizing policy with cfg's defaults
// filled in.
func NewEWMASizing(cfg EWMASizingConfig) (*EWMASizing, error) {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = 0.2
	}
	if cfg.LatencyAlpha == 0 {
		cfg.LatencyAlpha = 0.2
	}
	if cfg.InitialLatency == 0 {
		cfg.InitialLatency = time.Second
	}
	if cfg.Safety == 0 {
		cfg.Safety = 2
	}
	switch {
	case cfg.Min < 0 || cfg.Max <= 0 || cfg.Min > cfg.Max:
		return nil, fmt.Errorf("warmpool: sizing: want 0 <= Min <= Max and Max > 0, got Min=%d Max=%d", cfg.Min, cfg.Max)
	case cfg.Interval < 0 || cfg.InitialLatency < 0:
		return nil, fmt.Errorf("warmpool: sizing: Interval and InitialLatency must be > 0")
	case !(cfg.Alpha > 0 && cfg.Alpha <= 1) || !(cfg.LatencyAlpha > 0 && cfg.LatencyAlpha <= 1):
		return nil, fmt.Errorf("warmpool: sizing: Alpha and LatencyAlpha must be in (0, 1]")
	case !(cfg.Safety >= 1) || math.IsInf(cfg.Safety, 0):
		return nil, fmt.Errorf("warmpool: sizing: Safety must be a finite number >= 1, got %v", cfg.Safety)
	}
	return &EWMASizing{cfg: cfg, latency: cfg.InitialLatency}, nil
}

// advance closes the buckets that ended by now.
func (s *EWMASizing) advance(now time.Time) {
	if !s.started {
		s.started, s.bucketStart = true, now
		return
	}
	elapsed := now.Sub(s.bucketStart)
	if elapsed < s.cfg.Interval {
		return
	}
	n := int64(elapsed / s.cfg.Interval)
	// The first closed bucket holds the counted takes; the others were
	// empty and only decay the average.
	s.rate += s.cfg.Alpha * (float64(s.count)/s.cfg.Interval.Seconds() - s.rate)
	if n > 1 {
		s.rate *= math.Pow(1-s.cfg.Alpha, float64(n-1))
	}
	s.count = 0
	s.bucketStart = s.bucketStart.Add(time.Duration(n) * s.cfg.Interval)
}

// ObserveTake implements [SizingPolicy].
func (s *EWMASizing) ObserveTake(now time.Time) {
	s.advance(now)
	s.count++
}

// ObserveCreate implements [SizingPolicy]. Negative latencies (a clock
// stepping back) are ignored.
func (s *EWMASizing) ObserveCreate(_ time.Time, latency time.Duration) {
	if latency < 0 {
		return
	}
	if !s.seenLatency {
		s.seenLatency, s.latency = true, latency
		return
	}
	s.latency += time.Duration(s.cfg.LatencyAlpha * float64(latency-s.latency))
}

// Rate returns the averaged take rate per second as of the last closed
// interval.
func (s *EWMASizing) Rate() float64 { return s.rate }

// Latency returns the averaged creation latency.
func (s *EWMASizing) Latency() time.Duration { return s.latency }

// roundSlack is ignored when rounding the target up, so that the float
// noise of an average that converges to an integer does not add a pod.
const roundSlack = 0.01

// Target implements [SizingPolicy].
func (s *EWMASizing) Target(now time.Time) int {
	s.advance(now)
	x := s.rate * s.latency.Seconds() * s.cfg.Safety
	n := s.cfg.Max
	if x < float64(s.cfg.Max) {
		n = int(math.Ceil(x - roundSlack))
	}
	return min(max(n, s.cfg.Min), s.cfg.Max)
}

// FixedSizing is a [SizingPolicy] whose target never changes.
type FixedSizing int

// ObserveTake implements [SizingPolicy]; it does nothing.
func (FixedSizing) ObserveTake(time.Time) {}

// ObserveCreate implements [SizingPolicy]; it does nothing.
func (FixedSizing) ObserveCreate(time.Time, time.Duration) {}

// Target implements [SizingPolicy].
func (f FixedSizing) Target(time.Time) int { return int(f) }
