package router

import (
	"fmt"
	"math"
	"time"
)

// BreakerState is the state of an instance's circuit breaker.
type BreakerState uint8

const (
	// Closed: the instance is a candidate; consecutive failures are
	// counted.
	Closed BreakerState = iota
	// Open: the instance is ejected until its ejection ends.
	Open
	// HalfOpen: the ejection ended; the instance takes one probe request
	// at a time. A success closes the breaker, a failure opens it again
	// for longer.
	HalfOpen
)

var breakerNames = [...]string{"closed", "open", "half-open"}

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	if int(s) < len(breakerNames) {
		return breakerNames[s]
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// BreakerConfig configures outlier ejection. The defaults follow Envoy's
// outlier detection (consecutive_5xx 5, base_ejection_time 30 s,
// max_ejection_time 300 s, max_ejection_percent 10), with at least one
// instance ejectable so that a function with fewer than ten instances still
// sheds a broken one.
type BreakerConfig struct {
	// ConsecutiveFailures ejects an instance after this many failures in
	// a row (outcomes for which [Outcome.Failure] is true). Default 5.
	ConsecutiveFailures int
	// BaseEjection is the length of the first ejection; the k-th
	// ejection lasts k × BaseEjection. Default 30 s.
	BaseEjection time.Duration
	// MaxEjection caps an ejection's length before jitter. Default 300 s.
	MaxEjection time.Duration
	// Jitter lengthens each ejection by a random fraction in [0, Jitter)
	// of its length, so that instances ejected together do not come back
	// together. Default 0.1; set a negative value for none.
	Jitter float64
	// MaxEjectedShare bounds the ejected (open or half-open) instances of
	// one function to this share of its instances, rounded down but at
	// least one. Default 0.1. Must be in (0, 1].
	MaxEjectedShare float64
	// MigrateAfter replaces an instance at its MigrateAfter-th ejection:
	// the router asks for a replacement through Hooks.Replace, then
	// drains and removes the instance. Default 3; a negative value never
	// migrates.
	MigrateAfter int
	// ForgetAfter resets the count of ejections of an instance that has
	// stayed closed this long, so that one bad minute a day does not
	// eventually migrate a healthy instance. Default 10 min; a negative
	// value never forgets.
	ForgetAfter time.Duration
}

func (c BreakerConfig) withDefaults() (BreakerConfig, error) {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 5
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = 30 * time.Second
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = 300 * time.Second
	}
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	c.Jitter = max(c.Jitter, 0)
	if c.MaxEjectedShare == 0 {
		c.MaxEjectedShare = 0.1
	}
	if c.MigrateAfter == 0 {
		c.MigrateAfter = 3
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = 10 * time.Minute
	}
	switch {
	case c.ConsecutiveFailures < 1:
		return c, fmt.Errorf("%w: Breaker.ConsecutiveFailures must be ≥ 1, got %d", ErrInvalidConfig, c.ConsecutiveFailures)
	case c.BaseEjection < 0 || c.MaxEjection < c.BaseEjection:
		return c, fmt.Errorf("%w: Breaker ejection times must satisfy 0 < BaseEjection ≤ MaxEjection, got %v and %v", ErrInvalidConfig, c.BaseEjection, c.MaxEjection)
	case !(c.Jitter <= 1):
		return c, fmt.Errorf("%w: Breaker.Jitter must be ≤ 1, got %v", ErrInvalidConfig, c.Jitter)
	case !(c.MaxEjectedShare > 0 && c.MaxEjectedShare <= 1):
		return c, fmt.Errorf("%w: Breaker.MaxEjectedShare must be in (0, 1], got %v", ErrInvalidConfig, c.MaxEjectedShare)
	}
	return c, nil
}

// MaxEjected returns how many of n instances may be ejected at once: the
// configured share of n, rounded down, but at least one.
func (c BreakerConfig) MaxEjected(n int) int {
	share := c.MaxEjectedShare
	if share == 0 {
		share = 0.1
	}
	return max(1, int(share*float64(n)))
}

// breaker is one instance's circuit breaker: a deterministic state machine
// that takes the time as an argument. It is not safe for concurrent use;
// the router guards each breaker with its function's lock. Whether an
// ejection is allowed (the function's MaxEjectedShare) is decided by the
// caller between [Breaker.Failure] and [Breaker.Eject].
//
//	Closed   --ConsecutiveFailures failures--> (caller) Eject --> Open
//	Open     --Expire at Until-->                                HalfOpen
//	HalfOpen --Success-->                                        Closed
//	HalfOpen --Failure--> (caller) Eject, next length -->        Open
type breaker struct {
	cfg       BreakerConfig
	state     BreakerState
	failures  int
	ejections int
	until     time.Time
	closedAt  time.Time
}

// State returns the breaker's state.
func (b *breaker) State() BreakerState { return b.state }

// Failures returns the consecutive failures counted while closed.
func (b *breaker) Failures() int { return b.failures }

// Ejections returns how many times the instance was ejected (since the
// count was last forgotten).
func (b *breaker) Ejections() int { return b.ejections }

// Until returns when the current ejection ends (zero unless open).
func (b *breaker) Until() time.Time {
	if b.state != Open {
		return time.Time{}
	}
	return b.until
}

// pristine reports whether a success would change nothing: closed with no
// failure counted. The router's release fast path relies on it.
func (b *breaker) pristine() bool { return b.state == Closed && b.failures == 0 }

// Success records a request that succeeded at now. It reports whether the
// breaker closed (a half-open probe succeeded). While closed it resets the
// failure count; while open it changes nothing (the request was sent
// before the ejection).
func (b *breaker) Success(now time.Time) (closed bool) {
	switch b.state {
	case Closed:
		b.failures = 0
	case HalfOpen:
		b.state, b.failures, b.closedAt = Closed, 0, now
		return true
	}
	return false
}

// Failure records a failed request and reports whether the instance should
// now be ejected: when the consecutive failures reach the threshold while
// closed, or at any failure while half-open. While open it changes nothing.
// The caller then calls [Breaker.Eject], unless the function already has as
// many ejected instances as it may, in which case the breaker stays closed
// and the next failure asks again.
func (b *breaker) Failure(now time.Time) (eject bool) {
	switch b.state {
	case Closed:
		b.failures++
		return b.failures >= b.cfg.ConsecutiveFailures
	case HalfOpen:
		return true
	}
	return false
}

// Eject opens the breaker at now for k × BaseEjection (k counting this
// ejection), capped at MaxEjection, plus jitter × Jitter of that length;
// jitter is a random number in [0, 1) from the caller, so that a seeded
// caller gets reproducible ejections. It returns when the ejection ends,
// and migrate = true when this is the MigrateAfter-th ejection, in which
// case the caller replaces the instance instead of waiting for it. Eject on
// an open breaker changes nothing and returns its current end.
func (b *breaker) Eject(now time.Time, jitter float64) (until time.Time, migrate bool) {
	if b.state == Open {
		return b.until, false
	}
	if b.state == Closed && b.cfg.ForgetAfter > 0 && b.ejections > 0 && now.Sub(b.closedAt) >= b.cfg.ForgetAfter {
		b.ejections = 0
	}
	b.ejections++
	d := b.cfg.MaxEjection
	if k := time.Duration(b.ejections); k <= b.cfg.MaxEjection/max(b.cfg.BaseEjection, 1) {
		d = min(k*b.cfg.BaseEjection, b.cfg.MaxEjection)
	}
	extra := time.Duration(float64(d) * b.cfg.Jitter * min(max(jitter, 0), 1))
	if extra > 0 && d > math.MaxInt64-extra {
		d = math.MaxInt64 // a configuration with ejections of centuries
	} else {
		d += extra
	}
	b.state, b.failures, b.until = Open, 0, now.Add(d)
	return b.until, b.cfg.MigrateAfter > 0 && b.ejections >= b.cfg.MigrateAfter
}

// Expire moves an open breaker whose ejection has ended by now to
// half-open, and reports whether it did.
func (b *breaker) Expire(now time.Time) bool {
	if b.state != Open || now.Before(b.until) {
		return false
	}
	b.state = HalfOpen
	return true
}
