package loadshed

import (
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Defaults of [Config] and [AdaptiveConfig], with where they come from.
const (
	// DefaultInterval is the control interval, CoDel's: signals are
	// aggregated over it and must hold for a whole interval to count.
	DefaultInterval = 100 * time.Millisecond
	// DefaultCoolOff is how long every signal must stay clear before
	// shedding stops, and the retry hint of a shed request.
	DefaultCoolOff = time.Second
	// DefaultQueueDelayTarget is CoDel's target sojourn: admitted
	// requests that wait longer than this for a whole interval mean a
	// standing queue (the value Facebook's RPC servers use for their
	// CoDel queues).
	DefaultQueueDelayTarget = 5 * time.Millisecond
	// DefaultLowWater: while shedding, the in-flight signal clears only
	// when the average in flight falls below this fraction of the limit,
	// so a server held at its limit does not flap.
	DefaultLowWater = 0.9
	// DefaultWindow is the sliding window of per-caller accounting: long
	// enough that a caller's estimated demand is not noise, short enough
	// to follow a caller that changes its rate.
	DefaultWindow = 10 * time.Second
	// DefaultMaxCallers bounds the callers tracked one by one; the rest
	// share one account.
	DefaultMaxCallers = 10000
	// DefaultBurst is the room above the limit that callers within their
	// fair share may use while over-share callers are held to it: the
	// random swings of well-behaved callers, and the rise of their count
	// when latency rises, do not get them shed. Callers that want more
	// than their share never use it.
	DefaultBurst = 1.0

	// DefaultInitialLimit, DefaultMinLimit, DefaultMaxLimit bound the
	// adaptive limit (Netflix's concurrency-limits starts at 20; Envoy's
	// adaptive concurrency caps at 1000).
	DefaultInitialLimit = 20
	DefaultMinLimit     = 4
	DefaultMaxLimit     = 1000
	// DefaultTolerance lets the sampled latency exceed the no-load
	// latency by 50 % before the limit shrinks (Netflix's Gradient2
	// rttTolerance of 1.5).
	DefaultTolerance = 0.5
	// DefaultMinRTTWindow is how long the no-load latency is remembered;
	// an older minimum is replaced by newer measurements.
	DefaultMinRTTWindow = 30 * time.Second
	// DefaultMinSamples is the number of completions one update of the
	// adaptive limit needs (Envoy's request_count of 50).
	DefaultMinSamples = 50
	// DefaultSmoothing is the weight of a new estimate of the limit
	// (Netflix's Gradient2 smoothing of 0.2).
	DefaultSmoothing = 0.2
)

// Config configures a [Shedder]. The zero value is valid: the server's
// capacity is learned by the adaptive limit.
type Config struct {
	// Capacity is the number of requests the server can hold in flight
	// before latency suffers. Zero means unknown: the adaptive limit
	// finds it.
	Capacity int
	// Interval is the control interval. Zero means DefaultInterval.
	Interval time.Duration
	// CoolOff is how long every signal must stay clear before shedding
	// stops; at least one Interval. Zero means DefaultCoolOff.
	CoolOff time.Duration
	// RetryAfter is the hint shed requests carry. Zero means CoolOff.
	RetryAfter time.Duration
	// LowWater is the fraction of the limit below which the average in
	// flight must fall, while shedding, for the in-flight signal to
	// clear; in (0, 1]. Zero means DefaultLowWater.
	LowWater float64
	// QueueDelayTarget is the CoDel target: the queueing-delay signal
	// fires when every request that started in an interval had waited
	// longer than this since its admission (see [Ticket.Started]). Zero
	// means DefaultQueueDelayTarget; negative disables the signal.
	QueueDelayTarget time.Duration
	// Signals are more overload signals, polled once per interval.
	Signals []Signal
	// Adaptive configures the adaptive concurrency limit.
	Adaptive AdaptiveConfig
	// Window is the sliding window of per-caller accounting: counts of
	// arrivals and admissions over the window, in at most 10 buckets, and
	// a moving average of each caller's requests in flight over a quarter
	// of it. It must be a multiple of Interval, and of 10 Intervals when
	// longer than that. Zero means DefaultWindow.
	Window time.Duration
	// MaxCallers bounds the callers tracked one by one; callers beyond it
	// share one account (and so one fair share). Zero means
	// DefaultMaxCallers.
	MaxCallers int
	// Burst is the room above the limit, as a fraction of it, that
	// callers within their fair share may use while shedding; Critical
	// requests may use twice as much. Zero means DefaultBurst; negative
	// means none.
	Burst float64
	// Logger receives a line when shedding starts or stops. Nil means
	// slog.New(slog.DiscardHandler).
	Logger *slog.Logger
}

// AdaptiveConfig configures the adaptive concurrency limit: a gradient
// limiter that sets the limit from the ratio of the no-load latency to the
// sampled latency, plus a queue allowance of √limit.
type AdaptiveConfig struct {
	// Enabled turns the adaptive limit on when Capacity is set, capped at
	// Capacity. When Capacity is zero it is always on.
	Enabled bool
	// InitialLimit is the limit before any measurement. Zero means
	// DefaultInitialLimit (or Capacity, if lower).
	InitialLimit int
	// MinLimit and MaxLimit clamp the limit. Zero means DefaultMinLimit
	// and DefaultMaxLimit (or Capacity, when set).
	MinLimit int
	MaxLimit int
	// Tolerance is how far above the no-load latency the sampled latency
	// may go before the limit shrinks, as a fraction (0.5: 50 %). Zero
	// means DefaultTolerance.
	Tolerance float64
	// MinRTTWindow is how long a measured no-load latency is kept before
	// newer measurements replace it. Zero means DefaultMinRTTWindow.
	MinRTTWindow time.Duration
	// MinSamples is the number of completions one update needs; with
	// fewer in an interval, samples accumulate over intervals. Zero means
	// DefaultMinSamples.
	MinSamples int
	// Smoothing is the weight of each new estimate, in (0, 1]. Zero
	// means DefaultSmoothing.
	Smoothing float64
}

func (c *Config) normalize() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.Capacity < 0 {
		return bad("Capacity %d < 0", c.Capacity)
	}
	setDur(&c.Interval, DefaultInterval)
	setDur(&c.CoolOff, DefaultCoolOff)
	setDur(&c.RetryAfter, c.CoolOff)
	setDur(&c.QueueDelayTarget, DefaultQueueDelayTarget)
	setDur(&c.Window, DefaultWindow)
	setFloat(&c.LowWater, DefaultLowWater)
	setFloat(&c.Burst, DefaultBurst)
	if c.Burst < 0 {
		c.Burst = 0
	}
	if c.MaxCallers == 0 {
		c.MaxCallers = DefaultMaxCallers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Interval < time.Millisecond:
		return bad("Interval %v < 1ms", c.Interval)
	case c.CoolOff < c.Interval:
		return bad("CoolOff %v shorter than Interval %v", c.CoolOff, c.Interval)
	case c.RetryAfter < 0:
		return bad("RetryAfter %v < 0", c.RetryAfter)
	case c.Window < c.Interval || c.Window%c.Interval != 0 ||
		(c.Window > 10*c.Interval && c.Window%(10*c.Interval) != 0) || c.Window/c.Interval > 100000:
		return bad("Window %v must be a multiple of Interval %v (of 10 Intervals when longer), at most 100000 of them",
			c.Window, c.Interval)
	case !(c.LowWater > 0 && c.LowWater <= 1):
		return bad("LowWater %v not in (0, 1]", c.LowWater)
	case math.IsNaN(c.Burst) || math.IsInf(c.Burst, 0):
		return bad("Burst %v", c.Burst)
	case c.MaxCallers < 1:
		return bad("MaxCallers %d < 1", c.MaxCallers)
	}
	for i, s := range c.Signals {
		if s == nil {
			return bad("Signals[%d] is nil", i)
		}
	}
	return c.Adaptive.normalize(c.Capacity, bad)
}

func (a *AdaptiveConfig) normalize(capacity int, bad func(string, ...any) error) error {
	if capacity == 0 {
		a.Enabled = true
	}
	maxDefault := DefaultMaxLimit
	if capacity > 0 {
		maxDefault = capacity
	}
	setInt(&a.MaxLimit, maxDefault)
	setInt(&a.MinLimit, min(DefaultMinLimit, a.MaxLimit))
	setInt(&a.InitialLimit, min(DefaultInitialLimit, a.MaxLimit))
	setFloat(&a.Tolerance, DefaultTolerance)
	setDur(&a.MinRTTWindow, DefaultMinRTTWindow)
	setInt(&a.MinSamples, DefaultMinSamples)
	setFloat(&a.Smoothing, DefaultSmoothing)
	switch {
	case a.MinLimit < 1 || a.MaxLimit < a.MinLimit:
		return bad("adaptive limits [%d, %d] invalid", a.MinLimit, a.MaxLimit)
	case capacity > 0 && a.MaxLimit > capacity:
		return bad("adaptive MaxLimit %d above Capacity %d", a.MaxLimit, capacity)
	case a.InitialLimit < a.MinLimit || a.InitialLimit > a.MaxLimit:
		return bad("adaptive InitialLimit %d outside [%d, %d]", a.InitialLimit, a.MinLimit, a.MaxLimit)
	case !(a.Tolerance > 0) || math.IsInf(a.Tolerance, 0):
		return bad("adaptive Tolerance %v ≤ 0", a.Tolerance)
	case a.MinRTTWindow < 0:
		return bad("adaptive MinRTTWindow %v < 0", a.MinRTTWindow)
	case a.MinSamples < 1:
		return bad("adaptive MinSamples %d < 1", a.MinSamples)
	case !(a.Smoothing > 0 && a.Smoothing <= 1):
		return bad("adaptive Smoothing %v not in (0, 1]", a.Smoothing)
	}
	return nil
}

func setDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

func setFloat(v *float64, d float64) {
	if *v == 0 {
		*v = d
	}
}

func setInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}
