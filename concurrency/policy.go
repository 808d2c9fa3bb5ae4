package concurrency

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Observation is what a [ScalingPolicy] sees of one function at one
// decision. [Meter.Observation] fills the concurrency fields; the caller
// fills in Instances, InstanceLimit and Queued.
type Observation struct {
	// Instances is the number of instances now: Ready ones and those
	// starting (a start already asked for counts, or the policy would ask
	// again on every decision).
	Instances int
	// InstanceLimit is the per-instance concurrency limit (1 in Exclusive
	// mode); values below 1 count as 1.
	InstanceLimit int
	// StableConcurrency and PanicConcurrency are the time-weighted
	// average concurrency over the stable and the panic window.
	StableConcurrency float64
	PanicConcurrency  float64
	// InFlight is the number of requests in flight now.
	InFlight int
	// Queued is the number of requests waiting for an instance now.
	Queued int
	// LastActive is the last time a request was in flight or queued; the
	// zero time means never.
	LastActive time.Time
}

// Decision is a [ScalingPolicy]'s answer.
type Decision struct {
	// Desired is the number of instances the function should have.
	Desired int
	// Panicking reports that the policy is in panic mode (scaling on the
	// panic window, never down).
	Panicking bool
}

// ScalingPolicy decides how many instances a function should have. It is a
// deterministic state machine: Decide depends only on its arguments and on
// the policy's own state, reads no clock and starts no goroutine, so the
// Dataplane and a simulator on virtual time run the same policy. Use one
// policy value per function; the Dataplane calls Decide periodically (every
// 2 s in Knative) with a non-decreasing now.
type ScalingPolicy interface {
	Decide(now time.Time, o Observation) Decision
}

// Defaults of [KPAConfig], with where they come from.
const (
	// DefaultTargetUtilization keeps instances 70 % busy on average, the
	// headroom that absorbs a burst while new instances start (Knative's
	// container-concurrency-target-percentage).
	DefaultTargetUtilization = 0.7
	// DefaultPanicThreshold enters panic mode when the panic window asks
	// for twice the current instances (Knative's
	// panic-threshold-percentage, 200 %).
	DefaultPanicThreshold = 2.0
	// DefaultMaxScaleUpRate lets one decision multiply the instances by
	// up to 1000 (Knative's max-scale-up-rate): cold starts, not the
	// policy, are the limit when scaling up.
	DefaultMaxScaleUpRate = 1000.0
	// DefaultMaxScaleDownRate lets one decision at most halve the
	// instances (Knative's max-scale-down-rate).
	DefaultMaxScaleDownRate = 2.0
	// DefaultKeepAlive keeps the last instance for 10 minutes after the
	// last request, the idle time OpenWhisk keeps containers and that
	// AWS Lambda is observed to keep sandboxes for.
	DefaultKeepAlive = 10 * time.Minute
)

// KPAConfig configures a [KPA] policy. The zero value means all defaults.
type KPAConfig struct {
	// TargetUtilization is the fraction of each instance's limit that the
	// stable average should fill, in (0, 1]. Zero means
	// DefaultTargetUtilization.
	TargetUtilization float64
	// PanicThreshold is the ratio of the instances the panic window asks
	// for to the current instances at which panic mode starts, ≥ 1. Zero
	// means DefaultPanicThreshold.
	PanicThreshold float64
	// StableWindow is how long the panic window must stay below the
	// threshold before panic mode ends. Zero means DefaultStableWindow.
	StableWindow time.Duration
	// MaxScaleUpRate bounds one decision to ceil(rate × current)
	// instances, > 1. Zero means DefaultMaxScaleUpRate.
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one decision to floor(current / rate)
	// instances, > 1. Zero means DefaultMaxScaleDownRate.
	MaxScaleDownRate float64
	// MinInstances is the floor; above zero it disables scale to zero.
	MinInstances int
	// MaxInstances is the ceiling; zero means none.
	MaxInstances int
	// KeepAlive is how long the last instance stays after the function
	// went idle (nothing in flight or queued). Zero means
	// DefaultKeepAlive; use a negative value for no keep-alive.
	KeepAlive time.Duration
}

// KPA is the default [ScalingPolicy], modelled on Knative's pod
// autoscaler: desired = ceil(average concurrency / (InstanceLimit ×
// TargetUtilization)) over the stable window, bounded per decision by the
// scale-up and scale-down rates. When the panic window asks for at least
// PanicThreshold × the current instances, the policy panics: it follows
// the panic window and never scales down until the panic window has stayed
// below the threshold for a whole StableWindow. It scales to zero only
// when nothing is in flight or queued and the function has been idle for
// KeepAlive; a request in flight or queued always gets at least one
// instance. It is safe for concurrent use.
type KPA struct {
	cfg        KPAConfig
	mu         sync.Mutex
	panicSince time.Time // last time the panic threshold was crossed; zero when calm
	maxPanic   int       // the most instances asked for during this panic
	firstSeen  time.Time
	seen       bool
}

// NewKPA returns the default policy with cfg's settings. It returns an
// error wrapping [ErrInvalidConfig] for a setting out of range.
func NewKPA(cfg KPAConfig) (*KPA, error) {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.TargetUtilization, DefaultTargetUtilization)
	def(&cfg.PanicThreshold, DefaultPanicThreshold)
	def(&cfg.MaxScaleUpRate, DefaultMaxScaleUpRate)
	def(&cfg.MaxScaleDownRate, DefaultMaxScaleDownRate)
	if cfg.StableWindow == 0 {
		cfg.StableWindow = DefaultStableWindow
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.KeepAlive < 0 {
		cfg.KeepAlive = 0
	}
	bad := func(format string, args ...any) (*KPA, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case !(cfg.TargetUtilization > 0 && cfg.TargetUtilization <= 1):
		return bad("TargetUtilization %v not in (0, 1]", cfg.TargetUtilization)
	case !(cfg.PanicThreshold >= 1) || math.IsInf(cfg.PanicThreshold, 0):
		return bad("PanicThreshold %v < 1", cfg.PanicThreshold)
	case !(cfg.MaxScaleUpRate > 1) || math.IsInf(cfg.MaxScaleUpRate, 0):
		return bad("MaxScaleUpRate %v ≤ 1", cfg.MaxScaleUpRate)
	case !(cfg.MaxScaleDownRate > 1) || math.IsInf(cfg.MaxScaleDownRate, 0):
		return bad("MaxScaleDownRate %v ≤ 1", cfg.MaxScaleDownRate)
	case cfg.StableWindow < 0:
		return bad("StableWindow %v < 0", cfg.StableWindow)
	case cfg.MinInstances < 0 || cfg.MaxInstances < 0:
		return bad("negative MinInstances %d or MaxInstances %d", cfg.MinInstances, cfg.MaxInstances)
	case cfg.MaxInstances > 0 && cfg.MinInstances > cfg.MaxInstances:
		return bad("MinInstances %d > MaxInstances %d", cfg.MinInstances, cfg.MaxInstances)
	}
	return &KPA{cfg: cfg}, nil
}

// Config returns the policy's settings with defaults filled in.
func (p *KPA) Config() KPAConfig { return p.cfg }

// Decide implements [ScalingPolicy].
func (p *KPA) Decide(now time.Time, o Observation) Decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen {
		p.seen, p.firstSeen = true, now
	}
	current := max(o.Instances, 0)
	ready := float64(max(current, 1))
	target := float64(max(o.InstanceLimit, 1)) * p.cfg.TargetUtilization
	stableWant := math.Ceil(max(o.StableConcurrency, 0) / target)
	panicWant := math.Ceil(max(o.PanicConcurrency, 0) / target)
	up := math.Ceil(p.cfg.MaxScaleUpRate * ready)
	down := math.Floor(ready / p.cfg.MaxScaleDownRate)
	rate := func(v float64) int { return int(min(max(v, down), up)) }

	over := panicWant/ready >= p.cfg.PanicThreshold
	switch {
	case over && p.panicSince.IsZero():
		p.panicSince, p.maxPanic = now, current
	case over:
		p.panicSince = now
	case !p.panicSince.IsZero() && now.Sub(p.panicSince) >= p.cfg.StableWindow:
		p.panicSince, p.maxPanic = time.Time{}, 0
	}

	d := Decision{Desired: rate(stableWant)}
	if !p.panicSince.IsZero() {
		d.Panicking = true
		p.maxPanic = max(p.maxPanic, rate(panicWant))
		d.Desired = p.maxPanic
	}
	busy := o.InFlight > 0 || o.Queued > 0
	if busy {
		d.Desired = max(d.Desired, 1)
	}
	if d.Desired == 0 && current > 0 {
		// Never active: count the keep-alive from the first decision.
		idleSince := o.LastActive
		if idleSince.IsZero() {
			idleSince = p.firstSeen
		}
		if now.Sub(idleSince) < p.cfg.KeepAlive {
			d.Desired = 1
		}
	}
	d.Desired = max(d.Desired, p.cfg.MinInstances)
	if p.cfg.MaxInstances > 0 {
		d.Desired = min(d.Desired, p.cfg.MaxInstances)
	}
	return d
}
