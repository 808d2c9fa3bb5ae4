package router

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scriptedChecker fails the instances the test marks and counts checks.
type scriptedChecker struct {
	mu     sync.Mutex
	errs   map[string]error
	checks map[string]int
}

func newScriptedChecker() *scriptedChecker {
	return &scriptedChecker{errs: map[string]error{}, checks: map[string]int{}}
}

func (c *scriptedChecker) set(id string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[id] = err
}

func (c *scriptedChecker) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checks[id]
}

func (c *scriptedChecker) Check(ctx context.Context, inst *lifecycle.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks[inst.ID]++
	return c.errs[inst.ID]
}

var errDown = errors.New("connection refused")

func TestReadinessThresholdOnVirtualTime(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	chk := newScriptedChecker()
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk})
	require.NoError(t, err)
	defer h.Close()
	ctx := context.Background()

	h.RunOnce(ctx, t0) // first sight: the first check is a period away
	h.RunOnce(ctx, t0.Add(time.Second))
	assert.Equal(t, 0, chk.count("a"))
	chk.set("a", errDown)
	for i, at := range []time.Duration{2, 3, 4, 5} {
		h.RunOnce(ctx, t0.Add(at*time.Second))
		assert.Equal(t, lifecycle.Ready, a.State(), "round %d: fewer than 3 failures", i)
	}
	assert.Equal(t, 2, chk.count("a"), "checks run every 2 s, not every round")
	h.RunOnce(ctx, t0.Add(6*time.Second))
	assert.Equal(t, lifecycle.Unhealthy, a.State(), "the third failure takes it out")
	_, err = fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err)

	chk.set("a", nil)
	h.RunOnce(ctx, t0.Add(8*time.Second))
	assert.Equal(t, lifecycle.Ready, a.State(), "one success lets it back")
	fx.pick("f").Release(t0, Success)
	assert.Equal(t, []string{"added/caller@a", "ejected/health_pull@a", "readmitted/health_pull@a"}, fx.rec.kinds())
}

func TestLivenessReplacesAfterThreshold(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	chk := newScriptedChecker()
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk})
	require.NoError(t, err)
	ctx := context.Background()
	h.RunOnce(ctx, t0)
	chk.set("a", errDown)
	for s := 1; s < 135; s++ {
		h.RunOnce(ctx, t0.Add(time.Duration(s)*time.Second))
	}
	assert.Equal(t, lifecycle.Unhealthy, a.State(), "out of the routes, not yet given up")
	assert.Empty(t, fx.replaced)
	h.RunOnce(ctx, t0.Add(135*time.Second)) // third liveness failure: 45, 90, 135
	assert.Equal(t, lifecycle.Draining, a.State())
	assert.Equal(t, "a", <-fx.replaced)
	kinds := fx.rec.kinds()
	assert.Equal(t, "removed/liveness@a", kinds[len(kinds)-1])
	// The instance is gone from the monitor too.
	h.RunOnce(ctx, t0.Add(200*time.Second))
	assert.Empty(t, h.probes)
}

func TestLivenessCountResetsOnAnySuccess(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	chk := newScriptedChecker()
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk})
	require.NoError(t, err)
	ctx := context.Background()
	h.RunOnce(ctx, t0)
	for s := 1; s <= 300; s++ {
		// Failing except for one readiness check every minute.
		if s%60 == 10 {
			chk.set("a", nil)
		} else {
			chk.set("a", errDown)
		}
		h.RunOnce(ctx, t0.Add(time.Duration(s)*time.Second))
	}
	assert.NotEqual(t, lifecycle.Draining, a.State())
	assert.Empty(t, fx.replaced)
}

func TestCheckAnsweringReassignedRemovesAtOnce(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	chk := newScriptedChecker()
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk})
	require.NoError(t, err)
	h.RunOnce(context.Background(), t0)
	chk.set("a", lifecycle.CodeInstanceReassigned)
	h.RunOnce(context.Background(), t0.Add(2*time.Second))
	assert.Equal(t, lifecycle.Draining, a.State())
	assert.Nil(t, fx.r.Routes("f"))
	assert.Empty(t, fx.replaced)
}

func TestHealthConfigValidation(t *testing.T) {
	r, err := New(Config{}, Hooks{})
	require.NoError(t, err)
	bad := []HealthConfig{
		{Readiness: Probe{Period: -1}},
		{Liveness: Probe{FailureThreshold: -3}},
		{Readiness: Probe{Timeout: -time.Second}},
		{Interval: -time.Second},
		{MaxConcurrentChecks: -1},
	}
	for _, c := range bad {
		_, err := NewHealthMonitor(r, c)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
	}
	_, err = NewHealthMonitor(nil, HealthConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	h, err := NewHealthMonitor(r, HealthConfig{})
	require.NoError(t, err)
	assert.Equal(t, Probe{Period: 2 * time.Second, FailureThreshold: 3, Timeout: time.Second}, h.cfg.Readiness)
	assert.Equal(t, Probe{Period: 45 * time.Second, FailureThreshold: 3, Timeout: time.Second}, h.cfg.Liveness)
	assert.IsType(t, &HTTPChecker{}, h.cfg.Checker)
	require.NoError(t, h.Close())
}

// TestMonitorLoopOnFakeClock runs the real goroutines: ticks come from a
// fake clock, pushes from a HealthFeed; Close stops everything (goleak).
func TestMonitorLoopOnFakeClock(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	b := fx.add("f", "b", 1)
	chk := newScriptedChecker()
	chk.set("a", errDown)
	feed := newHealthFeed()
	clk := newFakeClock(t0)
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk, Source: feed, Clock: clk, Interval: time.Second})
	require.NoError(t, err)
	require.NoError(t, h.Start())
	assert.Error(t, h.Start(), "started twice")

	tk := <-clk.created
	assert.Equal(t, time.Second, tk.d)
	for s := range 8 {
		tk.c <- t0.Add(time.Duration(s) * time.Second)
	}
	// The send of the tick at 7 s returned once the round at 6 s was over.
	assert.Equal(t, lifecycle.Unhealthy, a.State())
	assert.Equal(t, lifecycle.Ready, b.State())

	require.Eventually(t, func() bool { return feed.Watches() == 1 }, 5*time.Second, time.Millisecond)
	clk.set(t0.Add(7 * time.Second))
	feed.Publish(HealthReport{InstanceID: "b", Healthy: false, Reason: "oom"})
	assert.Equal(t, lifecycle.Unhealthy, b.State(), "a push acts at once")
	ev := fx.rec.all()
	last := ev[len(ev)-1]
	assert.Equal(t, CauseHealthPush, last.Cause)
	assert.Equal(t, t0.Add(7*time.Second), last.At)

	require.NoError(t, h.Close())
	require.NoError(t, h.Close())
	assert.ErrorIs(t, h.Start(), ErrClosed)
	assert.Equal(t, 0, feed.Watches())
}

// failingSource fails its first Watch and then serves until cancelled.
type failingSource struct {
	calls chan int
	n     int
}

func (s *failingSource) Watch(ctx context.Context, report func(HealthReport)) error {
	s.n++
	s.calls <- s.n
	if s.n == 1 {
		return errors.New("broker unreachable")
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestMonitorResubscribesAfterSourceFailure(t *testing.T) {
	fx := newFixture(t, Config{})
	src := &failingSource{calls: make(chan int, 4)}
	clk := newFakeClock(t0)
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: newScriptedChecker(), Source: src, Clock: clk})
	require.NoError(t, err)
	require.NoError(t, h.Start())
	assert.Equal(t, 1, <-src.calls)
	// Two tickers: the loop's and the resubscription wait (either order).
	var wait *fakeTicker
	for range 2 {
		if tk := <-clk.created; tk.d == 2*time.Second {
			wait = tk
		}
	}
	require.NotNil(t, wait, "the retry waits one readiness period")
	wait.c <- t0.Add(2 * time.Second)
	assert.Equal(t, 2, <-src.calls)
	require.NoError(t, h.Close())
}

// blockingChecker blocks until its context ends.
type blockingChecker struct{ started chan struct{} }

func (c blockingChecker) Check(ctx context.Context, inst *lifecycle.Instance) error {
	c.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func TestCloseCutsChecksShortWithoutCountingThem(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	chk := blockingChecker{started: make(chan struct{}, 1)}
	clk := newFakeClock(t0)
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk, Clock: clk,
		Readiness: Probe{FailureThreshold: 1, Timeout: time.Hour}})
	require.NoError(t, err)
	require.NoError(t, h.Start())
	tk := <-clk.created
	tk.c <- t0
	tk.c <- t0.Add(2 * time.Second)
	<-chk.started
	require.NoError(t, h.Close())
	assert.Equal(t, lifecycle.Ready, a.State(), "an interrupted check is not a failure")
}

func TestMaxConcurrentChecksBoundsARound(t *testing.T) {
	fx := newFixture(t, Config{})
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		fx.add("f", id, 1)
	}
	var mu sync.Mutex
	inFlight, peak := 0, 0
	entered := make(chan struct{}, 5)
	release := make(chan struct{})
	chk := CheckerFunc(func(ctx context.Context, inst *lifecycle.Instance) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		entered <- struct{}{}
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	})
	h, err := NewHealthMonitor(fx.r, HealthConfig{Checker: chk, MaxConcurrentChecks: 2})
	require.NoError(t, err)
	h.RunOnce(context.Background(), t0)
	done := make(chan struct{})
	go func() {
		h.RunOnce(context.Background(), t0.Add(2*time.Second))
		close(done)
	}()
	<-entered
	<-entered // two checks are in flight at once
	for range 5 {
		release <- struct{}{}
	}
	<-done
	assert.Equal(t, 2, peak, "never more than MaxConcurrentChecks")
}
