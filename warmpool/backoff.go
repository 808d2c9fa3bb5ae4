package warmpool

import (
	"fmt"
	"time"
)

// Backoff spaces the retries of a failing pod creation: exponential growth
// from Base to Max, with "equal jitter" (half the delay fixed, half random)
// so that managers that failed together do not retry together, while a
// retry never comes sooner than half the nominal delay.
type Backoff struct {
	// Base is the nominal delay after the first failure. Default 200 ms.
	Base time.Duration
	// Max caps the nominal delay. Default 30 s.
	Max time.Duration
}

func (b Backoff) withDefaults() (Backoff, error) {
	if b.Base == 0 {
		b.Base = 200 * time.Millisecond
	}
	if b.Max == 0 {
		b.Max = 30 * time.Second
	}
	if b.Base < 0 || b.Max < b.Base {
		return b, fmt.Errorf("warmpool: backoff: want 0 < Base <= Max, got Base=%v Max=%v", b.Base, b.Max)
	}
	return b, nil
}

// Delay returns the delay before the next attempt after failures
// consecutive failures (>= 1), given r uniform in [0, 1): nominal =
// min(Base × 2^(failures-1), Max), delay = nominal/2 + r × nominal/2.
func (b Backoff) Delay(failures int, r float64) time.Duration {
	if failures < 1 {
		return 0
	}
	d := b.Base
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	r = min(max(r, 0), 1)
	return d/2 + time.Duration(r*float64(d/2))
}
