package faastest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/faasplane/faas/clock"
)

// Epoch is the instant virtual time starts at: the simulator's time zero
// and the default start of a [Clock]. It is a fixed, non-zero instant, so
// that policies that treat the zero time.Time as "never" behave.
var Epoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Clock is a fake [clock.Clock] for tests of the project's shells (the
// Dataplane, the health monitor, the warm-pool manager, lease stores,
// caches): time stands still until the test moves it with [Clock.Advance]
// or [Clock.Set], which fire the timers, tickers and AfterFunc functions
// that fall due, in order. It is safe for concurrent use.
//
// A goroutine that waits on the clock (Sleep, After, a ticker) registers a
// waiter first; [Clock.BlockUntil] lets a test wait until the goroutine it
// drives has got that far before it advances time, instead of sleeping.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*clockWaiter
	changed chan struct{} // closed and replaced when waiters change
	seq     uint64        // orders waiters with equal deadlines
}

type clockWaiter struct {
	at     time.Time
	period time.Duration // > 0 for tickers
	ch     chan time.Time
	fn     func() // AfterFunc's function, run in its own goroutine
	seq    uint64
}

// NewClock returns a clock standing at start (at [Epoch] when start is the
// zero time).
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = Epoch
	}
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (nothing happens for d <= 0),
// firing every timer and ticker whose deadline falls within, in deadline
// order. A ticker that falls due several times fires once per period, but
// like a time.Ticker it holds at most one tick that nobody received.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Read and move under one lock: concurrent Advances add up.
	c.setLocked(c.now.Add(d))
}

// Set moves the clock forward to t, firing what falls due as Advance does.
// A t before the clock's time changes nothing: time never goes back.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

func (c *Clock) setLocked(t time.Time) {
	for {
		i := c.earliestLocked()
		if i < 0 || c.waiters[i].at.After(t) {
			break
		}
		w := c.waiters[i]
		if w.at.After(c.now) {
			c.now = w.at
		}
		if w.fn != nil {
			go w.fn()
		} else {
			select {
			case w.ch <- w.at:
			default: // a ticker nobody reads: drop the tick
			}
		}
		if w.period > 0 {
			w.at = w.at.Add(w.period)
		} else {
			c.removeLocked(w)
		}
	}
	if t.After(c.now) {
		c.now = t
	}
}

func (c *Clock) earliestLocked() int {
	best := -1
	for i, w := range c.waiters {
		if best < 0 || w.at.Before(c.waiters[best].at) || (w.at.Equal(c.waiters[best].at) && w.seq < c.waiters[best].seq) {
			best = i
		}
	}
	return best
}

func (c *Clock) addLocked(d, period time.Duration) *clockWaiter {
	c.seq++
	w := &clockWaiter{at: c.now.Add(max(d, 0)), period: period, ch: make(chan time.Time, 1), seq: c.seq}
	c.waiters = append(c.waiters, w)
	c.signalLocked()
	return w
}

func (c *Clock) removeLocked(w *clockWaiter) bool {
	i := slices.Index(c.waiters, w)
	if i < 0 {
		return false
	}
	c.waiters = slices.Delete(c.waiters, i, i+1)
	c.signalLocked()
	return true
}

func (c *Clock) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// After returns a channel that receives the clock's time once it has
// advanced by d. A d <= 0 fires at the next Advance or Set.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addLocked(d, 0).ch
}

// Sleep waits until the clock has advanced by d, or until ctx is done, in
// which case it returns ctx.Err() and leaves no waiter behind.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	w := c.addLocked(d, 0)
	c.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		c.removeLocked(w)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// NewTicker returns a ticker that fires every d of the clock's time (d
// must be > 0; smaller values are raised to 1 ns).
func (c *Clock) NewTicker(d time.Duration) clock.Ticker {
	d = max(d, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return &clockTicker{c: c, w: c.addLocked(d, d)}
}

// NewTimer returns a timer that fires once the clock has advanced by d.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &clockTimer{c: c, w: c.addLocked(d, 0)}
}

// AfterFunc calls f in its own goroutine once the clock has advanced by d.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.addLocked(d, 0)
	w.fn, w.ch = f, nil
	return &clockTimer{c: c, w: w}
}

type clockTicker struct {
	c *Clock
	w *clockWaiter
}

func (t *clockTicker) C() <-chan time.Time { return t.w.ch }

func (t *clockTicker) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.removeLocked(t.w)
}

func (t *clockTicker) Reset(d time.Duration) {
	d = max(d, 1)
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.removeLocked(t.w)
	drain(t.w.ch)
	t.w.at, t.w.period = t.c.now.Add(d), d
	t.c.waiters = append(t.c.waiters, t.w)
	t.c.signalLocked()
}

func drain(ch chan time.Time) {
	select {
	case <-ch:
	default:
	}
}

type clockTimer struct {
	c *Clock
	w *clockWaiter
}

func (t *clockTimer) C() <-chan time.Time { return t.w.ch }

func (t *clockTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.removeLocked(t.w)
}

func (t *clockTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	active := t.c.removeLocked(t.w)
	drain(t.w.ch) // as time.Timer since Go 1.23: no stale tick after Reset
	t.c.seq++
	t.w.at, t.w.seq = t.c.now.Add(max(d, 0)), t.c.seq
	t.c.waiters = append(t.c.waiters, t.w)
	t.c.signalLocked()
	return active
}

// Waiters returns the number of pending timers, sleeps and tickers.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// BlockUntil waits until at least n timers, sleeps or tickers are pending,
// or until ctx is done (it then returns ctx.Err()). Tests call it before
// Advance so that the goroutine under test is known to wait on the clock.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		ok, ch := len(c.waiters) >= n, c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var _ clock.Clock = (*Clock)(nil)
