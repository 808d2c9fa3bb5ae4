package router

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConsecutiveFailuresEjectThenProbeReadmits(t *testing.T) {
	fx := newFixture(t, Config{Breaker: BreakerConfig{Jitter: -1, MaxEjectedShare: 0.5}})
	a := fx.add("f", "a", 4)
	b := fx.add("f", "b", 4)
	fx.rec.reset()

	fx.fail(a, 4, ConnectFailed, t0)
	fx.fail(a, 1, Success, t0) // resets the count
	fx.fail(a, 4, InstanceFailed, t0)
	fx.fail(a, 3, Canceled, t0) // neutral outcomes do not count nor reset
	fx.fail(a, 3, Rejected, t0)
	assert.Equal(t, Closed, fx.info("f", "a").Breaker)
	assert.Empty(t, fx.rec.kinds())

	fx.fail(a, 1, NotReady, t0.Add(time.Second))
	ri := fx.info("f", "a")
	assert.Equal(t, Open, ri.Breaker)
	assert.False(t, ri.Routable)
	assert.Equal(t, t0.Add(31*time.Second), ri.Until)
	events := fx.rec.all()
	require.Len(t, events, 1)
	assert.Equal(t, RouteEjected, events[0].Kind)
	assert.Equal(t, CauseBreaker, events[0].Cause)
	assert.Equal(t, t0.Add(31*time.Second), events[0].Until)
	for range 50 {
		rt := fx.pick("f")
		assert.Same(t, b, rt.Instance(), "an ejected instance is not picked")
		rt.Release(t0, Success)
	}
	_, err := fx.r.acquireInstance(a)
	assert.Same(t, ErrNoRoute, err)

	fx.r.tick(t0.Add(30 * time.Second))
	assert.Equal(t, Open, fx.info("f", "a").Breaker, "ejection not over yet")
	fx.r.tick(t0.Add(31 * time.Second))
	ri = fx.info("f", "a")
	assert.Equal(t, HalfOpen, ri.Breaker)
	assert.True(t, ri.Probing)

	// One probe at a time.
	probe, err := fx.r.acquireInstance(a)
	require.NoError(t, err)
	assert.True(t, probe.Probe())
	_, err = fx.r.acquireInstance(a)
	assert.Same(t, ErrNoCapacity, err, "the probe gate is taken")
	for range 50 {
		rt := fx.pick("f")
		assert.Same(t, b, rt.Instance(), "no second request while the probe is in flight")
		rt.Release(t0, Success)
	}
	// A neutral outcome frees the gate but decides nothing.
	probe.Release(t0.Add(32*time.Second), Canceled)
	assert.Equal(t, HalfOpen, fx.info("f", "a").Breaker)
	probe, err = fx.r.acquireInstance(a)
	require.NoError(t, err)
	probe.Release(t0.Add(33*time.Second), Success)
	ri = fx.info("f", "a")
	assert.Equal(t, Closed, ri.Breaker)
	assert.True(t, ri.Routable)
	assert.Equal(t, 1, ri.Ejections)
	assert.Equal(t, 0, ri.InFlight)
	assert.Equal(t, []string{"ejected/breaker@a", "half-open/breaker@a", "readmitted/breaker@a"}, fx.rec.kinds())
	assert.Equal(t, Stats{Instances: 2, Routable: 2, Free: 8}, fx.r.Stats("f"))
}

func TestFailedProbeEjectsForLonger(t *testing.T) {
	fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 2, Jitter: -1, MigrateAfter: -1}})
	a := fx.add("f", "a", 4)
	fx.fail(a, 2, ConnectFailed, t0)
	assert.Equal(t, t0.Add(30*time.Second), fx.info("f", "a").Until)
	now := t0.Add(30 * time.Second)
	want := []time.Duration{60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300}
	for i, d := range want {
		fx.r.tick(now)
		require.Equal(t, HalfOpen, fx.info("f", "a").Breaker, "round %d", i)
		fx.fail(a, 1, InstanceFailed, now) // the probe fails
		ri := fx.info("f", "a")
		require.Equal(t, Open, ri.Breaker)
		assert.Equal(t, now.Add(d*time.Second), ri.Until, "ejection %d", i+2)
		now = ri.Until
	}
}

func TestJitterComesFromTheSource(t *testing.T) {
	until := func(seed uint64) time.Time {
		fx := newFixture(t, Config{Rand: seeded(seed), Breaker: BreakerConfig{ConsecutiveFailures: 1, Jitter: 0.5}})
		a := fx.add("f", "a", 1)
		fx.fail(a, 1, ConnectFailed, t0)
		return fx.info("f", "a").Until
	}
	u1, u2 := until(1), until(2)
	assert.Equal(t, u1, until(1), "same seed, same ejection")
	assert.NotEqual(t, u1, u2)
	for _, u := range []time.Time{u1, u2} {
		assert.False(t, u.Before(t0.Add(30*time.Second)))
		assert.True(t, u.Before(t0.Add(45*time.Second)))
	}
}

func TestMaxEjectedShare(t *testing.T) {
	tests := []struct {
		instances, wantEjected int
		share                  float64
	}{
		{1, 1, 0.1}, {5, 1, 0.1}, {20, 2, 0.1}, {25, 2, 0.1}, {10, 5, 0.5}, {3, 3, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d instances, share %v", tt.instances, tt.share), func(t *testing.T) {
			fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 1, MaxEjectedShare: tt.share}})
			var insts []*lifecycle.Instance
			for i := range tt.instances {
				insts = append(insts, fx.add("f", fmt.Sprintf("i%02d", i), 2))
			}
			for round := range 3 {
				for _, inst := range insts {
					if rt, err := fx.r.acquireInstance(inst); err == nil {
						rt.Release(t0.Add(time.Duration(round)*time.Second), ConnectFailed)
					}
				}
			}
			st := fx.r.Stats("f")
			assert.Equal(t, tt.wantEjected, st.Ejected)
			assert.Equal(t, tt.instances-tt.wantEjected, st.Routable)
			// Half-open instances still count: a closed one that fails
			// cannot take their place.
			fx.r.tick(t0.Add(time.Hour))
			for _, inst := range insts {
				if rt, err := fx.r.acquireInstance(inst); err == nil && !rt.Probe() {
					rt.Release(t0.Add(time.Hour), ConnectFailed)
				} else if err == nil {
					rt.Release(t0.Add(time.Hour), Canceled)
				}
			}
			assert.Equal(t, tt.wantEjected, fx.r.Stats("f").Ejected)
		})
	}
}

func TestRepeatedEjectionMigrates(t *testing.T) {
	fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 1, MigrateAfter: 3}})
	a := fx.add("f", "a", 2)
	fx.add("f", "b", 2)
	now := t0
	for range 2 {
		fx.fail(a, 1, ConnectFailed, now)
		now = fx.info("f", "a").Until
		fx.r.tick(now)
	}
	assert.Empty(t, fx.replaced)
	held, err := fx.r.acquireInstance(a) // the probe
	require.NoError(t, err)
	held.Release(now, ConnectFailed) // third ejection
	select {
	case id := <-fx.replaced:
		assert.Equal(t, "a", id)
	default:
		t.Fatal("no replacement was requested")
	}
	assert.Equal(t, lifecycle.Draining, a.State())
	assert.Len(t, fx.r.Routes("f"), 1)
	kinds := fx.rec.kinds()
	assert.Equal(t, "removed/migrated@a", kinds[len(kinds)-1])
	assert.Equal(t, Stats{Instances: 1, Routable: 1, Free: 2}, fx.r.Stats("f"))
}

func TestReassignedRemovesAtOnce(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 3)
	other := fx.pick("f")
	rt := fx.pick("f")
	rt.Release(t0, Reassigned)
	assert.Equal(t, lifecycle.Draining, a.State())
	_, err := fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err)
	assert.Empty(t, fx.replaced, "a stale route is not a lost instance")
	other.Release(t0, Success)
	assert.Equal(t, 0, other.Slots().InFlight())
}

// TestExitedRemovesAndReplacesAtOnce: an agent that answers
// function_exited answers at once, so the policy would keep picking it;
// the first such answer removes the route and asks for a replacement, and
// the request may go elsewhere.
func TestExitedRemovesAndReplacesAtOnce(t *testing.T) {
	fx := newFixture(t, Config{Policy: FirstAvailable()})
	a := fx.add("f", "a", 3)
	b := fx.add("f", "b", 3)
	rt, err := fx.r.acquireInstance(a)
	require.NoError(t, err)
	rt.Release(t0, Exited)
	assert.Equal(t, lifecycle.Draining, a.State())
	assert.Equal(t, "a", <-fx.replaced)
	for range 10 {
		rt := fx.pick("f")
		assert.Same(t, b, rt.Instance())
		rt.Release(t0, Success)
	}
	assert.True(t, Retryable(Exited, false), "it never reached the function")
	assert.False(t, Exited.Reached())
	kinds := fx.rec.kinds()
	assert.Equal(t, "removed/function_exited@a", kinds[len(kinds)-1])
}

func TestRouterLogsItsOwnDecisions(t *testing.T) {
	var buf bytes.Buffer
	fx := newFixture(t, Config{
		Logger:  slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Breaker: BreakerConfig{ConsecutiveFailures: 1},
	})
	a := fx.add("f", "a", 1)
	assert.Empty(t, buf.String(), "an Add by the owner is logged at debug level only")
	fx.fail(a, 1, ConnectFailed, t0)
	assert.Contains(t, buf.String(), `msg="route ejected" function=f instance=a cause=breaker`)
}

// TestHalfOpenListensOnlyToTheProbe: requests sent before the ejection that
// end while the instance is half-open decide nothing; the probe does.
func TestHalfOpenListensOnlyToTheProbe(t *testing.T) {
	fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 1, MaxEjectedShare: 1}})
	a := fx.add("f", "a", 5)
	var old []Route
	for range 3 {
		rt, err := fx.r.acquireInstance(a)
		require.NoError(t, err)
		old = append(old, rt)
	}
	old[0].Release(t0, ConnectFailed) // ejects
	fx.r.tick(t0.Add(time.Hour))
	require.Equal(t, HalfOpen, fx.info("f", "a").Breaker)
	old[1].Release(t0.Add(time.Hour), Success)
	assert.Equal(t, HalfOpen, fx.info("f", "a").Breaker, "a stale success does not close")
	old[2].Release(t0.Add(time.Hour), InstanceFailed)
	assert.Equal(t, HalfOpen, fx.info("f", "a").Breaker, "a stale failure does not reopen")
	probe, err := fx.r.acquireInstance(a)
	require.NoError(t, err)
	require.True(t, probe.Probe())
	probe.Release(t0.Add(time.Hour), Success)
	assert.Equal(t, Closed, fx.info("f", "a").Breaker)
	assert.Equal(t, 0, fx.info("f", "a").InFlight)
}

func TestTickIsReproducible(t *testing.T) {
	run := func() []string {
		fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 1, MaxEjectedShare: 1, Jitter: -1}})
		var insts []*lifecycle.Instance
		for i := range 8 {
			insts = append(insts, fx.add("f", fmt.Sprintf("i%d", i), 1))
		}
		for _, inst := range insts {
			fx.fail(inst, 1, ConnectFailed, t0)
		}
		fx.rec.reset()
		fx.r.tick(t0.Add(time.Minute))
		return fx.rec.kinds()
	}
	first := run()
	require.Len(t, first, 8)
	for range 5 {
		require.Equal(t, first, run())
	}
}
