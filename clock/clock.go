// Package clock is the one source of time of the module's shells: the
// Dataplane, the warm-pool manager, the cold-start workflow, the health
// monitor and the code cache all read the time and make their timers
// through a [Clock], so that a test or the simulator can run them on
// virtual time (faastest.Clock) while production runs them on the system
// clock ([System]).
//
// The policies themselves (picking, scaling, shedding, breakers, pool
// sizing) read no clock at all: they take now as an argument, and the
// shell that calls them passes its clock's time. A Clock is therefore only
// needed where something waits: a ticker that drives a control loop, a
// timer that bounds a retry's backoff, a function to run later.
//
// Deadlines that bound what a caller waits (a request's timeout, a queue
// time) are contexts, and contexts run on real time: a virtual clock
// governs when the shells act, not how long a caller is willing to wait.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers. Implementations must be safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once after d, like
	// time.NewTimer.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d (d > 0), like
	// time.NewTicker.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine after d, like
	// time.AfterFunc; the returned Timer's C is nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a single event, like *time.Timer.
type Timer interface {
	// C delivers the time at which the timer fired (nil for AfterFunc).
	C() <-chan time.Time
	// Stop prevents the timer from firing and reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d and reports whether it had been
	// active.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks at intervals, like *time.Ticker.
type Ticker interface {
	// C delivers the ticks.
	C() <-chan time.Time
	// Stop turns the ticker off.
	Stop()
	// Reset stops the ticker and makes it tick every d from now.
	Reset(d time.Duration)
}

// System returns the clock of package time.
func System() Clock { return system{} }

// Or returns c, or the system clock when c is nil: what a constructor
// calls on its config's Clock field.
func Or(c Clock) Clock {
	if c == nil {
		return system{}
	}
	return c
}

// Sleep waits d on c, or until ctx is done, in which case it returns
// ctx.Err().
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type system struct{}

func (system) Now() time.Time                   { return time.Now() }
func (system) NewTimer(d time.Duration) Timer   { return sysTimer{time.NewTimer(d)} }
func (system) NewTicker(d time.Duration) Ticker { return sysTicker{time.NewTicker(d)} }
func (system) AfterFunc(d time.Duration, f func()) Timer {
	return sysTimer{time.AfterFunc(d, f)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type sysTicker struct{ t *time.Ticker }

func (t sysTicker) C() <-chan time.Time   { return t.t.C }
func (t sysTicker) Stop()                 { t.t.Stop() }
func (t sysTicker) Reset(d time.Duration) { t.t.Reset(d) }
