package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// lockedSource makes a seeded source safe for the concurrent tests.
type lockedSource struct {
	mu  sync.Mutex
	src rand.Source
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.Uint64()
}

func seeded(seed uint64) rand.Source {
	return &lockedSource{src: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) ObserveRoute(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// kinds returns "kind/cause@instance" for each event, for compact asserts.
func (r *recorder) kinds() []string {
	var out []string
	for _, e := range r.all() {
		out = append(out, fmt.Sprintf("%s/%s@%s", e.Kind, e.Cause, e.Instance.ID))
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// fixture is a router with a recorder, a seeded source and helpers.
type fixture struct {
	t        testing.TB
	r        *Router
	rec      *recorder
	replaced chan string
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{t: t, rec: &recorder{}, replaced: make(chan string, 100)}
	if cfg.Rand == nil {
		cfg.Rand = seeded(1)
	}
	r, err := New(cfg, Hooks{Observer: fx.rec, Replace: func(inst *lifecycle.Instance, reason string) { fx.replaced <- inst.ID }})
	require.NoError(t, err)
	fx.r = r
	return fx
}

// add adds a Ready instance of fnID with the given limit.
func (fx *fixture) add(fnID, id string, limit int) *lifecycle.Instance {
	fx.t.Helper()
	return fx.addWith(fnID, id, limit, nil)
}

// addWith adds a Ready instance whose released slots go to w first.
func (fx *fixture) addWith(fnID, id string, limit int, w Waiters) *lifecycle.Instance {
	fx.t.Helper()
	inst := readyInstance(fx.t, fnID, id, fx.r)
	require.NoError(fx.t, fx.r.Add(t0, inst, concurrency.NewSlots(concurrency.Shared, limit), w))
	return inst
}

// pick picks and fails the test on an error.
func (fx *fixture) pick(fnID string) Route {
	fx.t.Helper()
	rt, err := fx.r.Pick(fnID)
	require.NoError(fx.t, err)
	return rt
}

// fail releases n routes to inst, each with outcome o, at now.
func (fx *fixture) fail(inst *lifecycle.Instance, n int, o Outcome, now time.Time) {
	fx.t.Helper()
	for range n {
		rt, err := fx.r.acquireInstance(inst)
		require.NoError(fx.t, err)
		rt.Release(now, o)
	}
}

func (fx *fixture) info(fnID, id string) RouteInfo {
	fx.t.Helper()
	for _, ri := range fx.r.Routes(fnID) {
		if ri.Instance.ID == id {
			return ri
		}
	}
	fx.t.Fatalf("instance %s not routed", id)
	return RouteInfo{}
}

// fakeClock is a Clock whose tickers the test drives: each NewTicker is
// announced on created, and its channel is unbuffered, so that a second
// send on it returns only after the loop finished the round of the first.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	created chan *fakeTicker
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, created: make(chan *fakeTicker, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

func (c *fakeClock) NewTimer(d time.Duration) clock.Timer { return clock.System().NewTimer(d) }
func (c *fakeClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return clock.System().AfterFunc(d, f)
}

func (c *fakeClock) NewTicker(d time.Duration) clock.Ticker {
	t := &fakeTicker{c: make(chan time.Time), d: d}
	c.created <- t
	return t
}

type fakeTicker struct {
	c chan time.Time
	d time.Duration
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }
func (t *fakeTicker) Stop()               {}
func (t *fakeTicker) Reset(time.Duration) {}

// newBreaker returns a closed breaker. Zero fields of cfg take their
// defaults; it returns an error wrapping [ErrInvalidConfig] when a field is
// out of range.
func newBreaker(cfg BreakerConfig) (*breaker, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &breaker{cfg: c}, nil
}

// healthFeed is an in-process [HealthSource]: what a host-local checker
// publishes reaches every watcher synchronously. It is the push side when
// checker and dataplane share a process, and a test double otherwise.
type healthFeed struct {
	mu     sync.RWMutex
	subs   map[int]func(HealthReport)
	next   int
	closed bool
	done   chan struct{}
}

// newHealthFeed returns a feed without watchers.
func newHealthFeed() *healthFeed {
	return &healthFeed{subs: make(map[int]func(HealthReport)), done: make(chan struct{})}
}

// Publish delivers rep to every current watcher before it returns. A
// watcher must not call Watch, Publish or Close from its report function.
func (h *healthFeed) Publish(rep HealthReport) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, fn := range h.subs {
		fn(rep)
	}
}

// Watches returns the number of current watchers.
func (h *healthFeed) Watches() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Watch delivers published reports to report until ctx is done (it returns
// ctx.Err()) or the feed is closed ([ErrClosed]). Once it has returned,
// report is not called again.
func (h *healthFeed) Watch(ctx context.Context, report func(HealthReport)) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	id := h.next
	h.next++
	h.subs[id] = report
	h.mu.Unlock()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-h.done:
		err = ErrClosed
	}
	h.mu.Lock()
	delete(h.subs, id)
	h.mu.Unlock()
	return err
}

// Close ends every Watch; it is idempotent.
func (h *healthFeed) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}
