package concurrency

import (
	"fmt"
	"sync"
	"time"
)

// KeepAliveConfig configures a [KeepAlive] policy. The zero value means
// all defaults.
type KeepAliveConfig struct {
	// KeepAlive is how long the function's instances stay after it went
	// idle (nothing in flight or queued): exactly that long, whatever the
	// meter still remembers of the last burst. Zero means
	// DefaultKeepAlive; a negative value scales to the floor at the first
	// round with nothing in flight or queued.
	KeepAlive time.Duration
	// KPA configures the scaling while requests are in flight or queued;
	// its KeepAlive is ignored. MinInstances and MaxInstances bound every
	// answer.
	KPA KPAConfig
}

// KeepAlive is the fixed keep-alive policy of OpenWhisk and of AWS Lambda
// as observed: while the function has requests it scales like the [KPA]
// on the meter's averages; once it is idle it keeps its instances for
// exactly KeepAlive, then scales to MinInstances. The KPA itself keeps an
// instance at least as long as its 60 s stable average is above zero, so
// a KPA keep-alive of 6 s behaves like 60 s; this policy does what its
// keep-alive says, which is what a study of keep-alive times (the Pareto
// of cold starts against idle memory) needs. It is safe for concurrent
// use.
type KeepAlive struct {
	keepAlive time.Duration
	min       int
	kpa       *KPA
	mu        sync.Mutex
	firstSeen time.Time
	seen      bool
}

// NewKeepAlive returns a fixed keep-alive policy, or an error wrapping
// [ErrInvalidConfig] for a KPA setting out of range.
func NewKeepAlive(cfg KeepAliveConfig) (*KeepAlive, error) {
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	inner := cfg.KPA
	inner.KeepAlive = -1 // idle instances are this policy's business
	kpa, err := NewKPA(inner)
	if err != nil {
		return nil, fmt.Errorf("keep-alive policy: %w", err)
	}
	return &KeepAlive{keepAlive: max(cfg.KeepAlive, 0), min: cfg.KPA.MinInstances, kpa: kpa}, nil
}

// Duration returns the keep-alive.
func (p *KeepAlive) Duration() time.Duration { return p.keepAlive }

// Decide implements [ScalingPolicy].
func (p *KeepAlive) Decide(now time.Time, o Observation) Decision {
	d := p.kpa.Decide(now, o)
	if o.InFlight > 0 || o.Queued > 0 {
		return d
	}
	idle := now.Sub(p.idleSince(now, o))
	switch {
	case idle >= p.keepAlive:
		d = Decision{Desired: p.min}
	case o.Instances > 0:
		d.Desired = max(d.Desired, 1)
	}
	return p.bound(d)
}

// idleSince returns when the function went idle: its last activity, or
// the first decision when it never was active.
func (p *KeepAlive) idleSince(now time.Time, o Observation) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen {
		p.seen, p.firstSeen = true, now
	}
	if o.LastActive.IsZero() {
		return p.firstSeen
	}
	return o.LastActive
}

func (p *KeepAlive) bound(d Decision) Decision {
	cfg := p.kpa.Config()
	d.Desired = max(d.Desired, cfg.MinInstances)
	if cfg.MaxInstances > 0 {
		d.Desired = min(d.Desired, cfg.MaxInstances)
	}
	return d
}

// QuietUntil implements [Quiet]: an idle function's answer changes when
// the keep-alive runs out, and never after it (until a request); before,
// it follows the KPA's part, which makes its own promise.
func (p *KeepAlive) QuietUntil(now time.Time, o Observation, d Decision, m IdleMeter) time.Time {
	if o.InFlight > 0 || o.Queued > 0 || d.Panicking {
		return now
	}
	p.mu.Lock()
	since := o.LastActive
	if since.IsZero() {
		since = p.firstSeen
	}
	p.mu.Unlock()
	return within(now, since.Add(p.keepAlive), p.kpa.QuietUntil(now, o, d, m))
}

// within combines a phase that ends at end (then the floor, for ever)
// with the inner KPA's promise inner over it.
func within(now, end, inner time.Time) time.Time {
	switch {
	case !now.Before(end):
		return time.Time{}
	case inner.IsZero():
		return end
	case inner.After(now):
		if inner.Before(end) {
			return inner
		}
		return end
	}
	return now
}

var (
	_ ScalingPolicy = (*KeepAlive)(nil)
	_ Quiet         = (*KeepAlive)(nil)
)
