package router

import (
	"errors"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewValidatesConfig(t *testing.T) {
	bad := []Config{
		{PickAttempts: -1},
		{Retry: RetryBudget{Ratio: 1.5}},
		{Retry: RetryBudget{Ratio: -0.2}},
	}
	for _, c := range bad {
		_, err := New(c, Hooks{})
		assert.True(t, errors.Is(err, ErrInvalidConfig), "%+v: %v", c, err)
	}
	r, err := New(Config{}, Hooks{})
	require.NoError(t, err)
	assert.Equal(t, "p2c", r.Policy().Name())
	assert.Equal(t, RetryBudget{Ratio: 0.2, Min: 3}, r.retry)
	assert.Equal(t, 3, r.attempts)
}

func TestAddRejectsBadInstances(t *testing.T) {
	fx := newFixture(t, Config{})
	slots := concurrency.NewSlots(concurrency.Shared, 1)
	draining := readyInstance(t, "f", "d", nil)
	require.NoError(t, draining.Transition(t0, lifecycle.Draining, "test"))
	tests := []struct {
		name  string
		inst  *lifecycle.Instance
		slots *concurrency.Slots
		want  error
	}{
		{"nil instance", nil, slots, ErrInvalidInstance},
		{"empty ID", lifecycle.NewInstance(lifecycle.Info{FunctionID: "f"}, t0), slots, ErrInvalidInstance},
		{"empty function", lifecycle.NewInstance(lifecycle.Info{ID: "i"}, t0), slots, ErrInvalidInstance},
		{"nil slots", readyInstance(t, "f", "i", nil), nil, ErrInvalidInstance},
		{"draining", draining, slots, ErrInvalidInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fx.r.Add(t0, tt.inst, tt.slots, nil)
			assert.True(t, errors.Is(err, tt.want), "%v", err)
		})
	}
	fx.add("f", "dup", 1)
	err := fx.r.Add(t0, readyInstance(t, "g", "dup", nil), slots, nil)
	assert.True(t, errors.Is(err, ErrDuplicateInstance), "%v", err)
	assert.Equal(t, 1, fx.r.Functions(), "the failed Add leaves no empty function behind")
}

func TestPickRoutesOnlyToReadyInstances(t *testing.T) {
	fx := newFixture(t, Config{})
	_, err := fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err, "unknown function")

	a := fx.add("f", "a", 2)
	rt := fx.pick("f")
	assert.Same(t, a, rt.Instance())
	assert.Same(t, rt.Slots(), rt.Slots())
	assert.False(t, rt.Probe())
	assert.False(t, rt.Retried())
	rt2 := fx.pick("f")
	_, err = fx.r.Pick("f")
	assert.Same(t, ErrNoCapacity, err, "both slots held")
	rt.Release(t0, Success)
	rt2.Release(t0, Success)
	assert.Equal(t, 0, rt.Slots().InFlight())

	// A state change observed by the router takes the instance out and
	// lets it back.
	require.NoError(t, a.Transition(t0, lifecycle.Unhealthy, "test"))
	_, err = fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err)
	assert.Equal(t, Stats{Instances: 1}, fx.r.Stats("f"))
	require.NoError(t, a.Transition(t0, lifecycle.Ready, "test"))
	fx.pick("f").Release(t0, Success)

	// An instance added before it is Ready becomes a candidate when it is.
	b := lifecycle.NewInstance(lifecycle.Info{ID: "b", FunctionID: "g"}, t0, fx.r)
	require.NoError(t, fx.r.Add(t0, b, concurrency.NewSlots(concurrency.Shared, 1), nil))
	_, err = fx.r.Pick("g")
	assert.Same(t, ErrNoRoute, err)
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(t, b.Transition(t0, s, "start"))
	}
	assert.Same(t, b, fx.pick("g").Instance())

	// Draining removes it.
	require.NoError(t, a.Transition(t0, lifecycle.Draining, "scale down"))
	_, err = fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err)
	assert.Zero(t, fx.r.Stats("f").Instances)
	assert.Equal(t, []string{
		"added/caller@a", "ejected/state@a", "readmitted/state@a",
		"added/caller@b", "readmitted/state@b", "removed/state@a",
	}, fx.rec.kinds())
}

// TestPickChecksStateItDoesNotObserve: an instance whose transitions the
// router does not observe is still never returned outside Ready.
func TestPickChecksStateItDoesNotObserve(t *testing.T) {
	fx := newFixture(t, Config{})
	inst := readyInstance(t, "f", "a", nil) // no router observer
	require.NoError(t, fx.r.Add(t0, inst, concurrency.NewSlots(concurrency.Shared, 5), nil))
	require.NoError(t, inst.Transition(t0, lifecycle.Unhealthy, "unseen"))
	_, err := fx.r.Pick("f")
	assert.Same(t, ErrNoCapacity, err)
	assert.Equal(t, lifecycle.Unhealthy, inst.State())
	_, err = fx.r.acquireInstance(inst)
	assert.Same(t, ErrNoCapacity, err)
}

func TestRemove(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 3)
	b := fx.add("f", "b", 3)
	held := fx.pick("f")
	assert.False(t, fx.r.Remove(t0, readyInstance(t, "f", "a", nil), "another instance with a's ID"))
	assert.True(t, fx.r.Remove(t0, a, "scale down"))
	assert.False(t, fx.r.Remove(t0, a, "again"))
	assert.False(t, fx.r.Remove(t0, nil, "nil"))
	assert.Equal(t, lifecycle.Ready, a.State(), "Remove leaves the lifecycle state alone")
	for range 20 {
		rt := fx.pick("f")
		assert.Same(t, b, rt.Instance())
		rt.Release(t0, Success)
	}
	held.Release(t0, Success) // a route to a removed instance still releases
	assert.Equal(t, 1, fx.r.Functions())
	assert.True(t, fx.r.Remove(t0, b, "scale to zero"))
	assert.Equal(t, 0, fx.r.Functions(), "an empty function leaves the table")
	assert.Nil(t, fx.r.Routes("f"))
	fx.add("f", "c", 1) // and comes back
	assert.Equal(t, 1, fx.r.Functions())
	assert.Equal(t, "removed/caller@a", fx.rec.kinds()[2])
}

func TestAcquireSpecificInstance(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.add("f", "a", 1)
	b := fx.add("f", "b", 2)
	for range 2 {
		rt, err := fx.r.acquireInstance(b)
		require.NoError(t, err)
		assert.Same(t, b, rt.Instance())
	}
	_, err := fx.r.acquireInstance(b)
	assert.Same(t, ErrNoCapacity, err)
	_, err = fx.r.acquireInstance(nil)
	assert.Same(t, ErrNoRoute, err)
	_, err = fx.r.acquireInstance(readyInstance(t, "f", "stranger", nil))
	assert.Same(t, ErrNoRoute, err)
	_, err = fx.r.acquireInstance(readyInstance(t, "nope", "x", nil))
	assert.Same(t, ErrNoRoute, err)
	assert.Equal(t, Stats{Instances: 2, Routable: 2, InFlight: 2, Free: 1}, fx.r.Stats("f"))
}

func TestStatsAndCapacity(t *testing.T) {
	fx := newFixture(t, Config{Breaker: BreakerConfig{ConsecutiveFailures: 1, MaxEjectedShare: 1}})
	a := fx.add("f", "a", 4)
	b := fx.add("f", "b", 2)
	fx.add("f", "c", 3)
	_, err := fx.r.acquireInstance(a)
	require.NoError(t, err)
	fx.fail(b, 1, ConnectFailed, t0)
	routable, free := fx.r.Capacity("f")
	assert.Equal(t, 2, routable)
	assert.Equal(t, 6, free)
	assert.Equal(t, Stats{Instances: 3, Routable: 2, Ejected: 1, InFlight: 1, Free: 6}, fx.r.Stats("f"))
	fx.r.tick(t0.Add(time.Hour))
	assert.Equal(t, Stats{Instances: 3, Routable: 2, Probing: 1, Ejected: 1, InFlight: 1, Free: 6}, fx.r.Stats("f"))
	r0, f0 := fx.r.Capacity("nope")
	assert.Zero(t, r0+f0)
	assert.Equal(t, Stats{}, fx.r.Stats("nope"))
}

// waitersFunc adapts a function to Waiters.
type waitersFunc func(rt Route) bool

func (f waitersFunc) Handoff(rt Route) bool { return f(rt) }

func TestHandoffKeepsTheSlot(t *testing.T) {
	var handed []Route
	take := true
	fx := newFixture(t, Config{})
	a := fx.addWith("f", "a", 1, waitersFunc(func(rt Route) bool {
		if take {
			handed = append(handed, rt)
		}
		return take
	}))
	fx.pick("f").Release(t0, Success)
	require.Len(t, handed, 1, "the released slot was offered")
	assert.Same(t, a, handed[0].Instance())
	assert.Equal(t, 1, fx.r.Stats("f").InFlight)
	_, err := fx.r.Pick("f")
	assert.Same(t, ErrNoCapacity, err, "the handed-off slot is still held")

	take = false
	handed[0].Release(t0, Success)
	assert.Equal(t, 0, fx.r.Stats("f").InFlight, "declined: the slot is released")

	// A failed route's slot is offered only while the instance stays
	// routable; a route to a removed instance is not offered.
	rt := fx.pick("f")
	take = true
	require.True(t, fx.r.Remove(t0, a, "test"))
	rt.Release(t0, Success)
	assert.Len(t, handed, 1)
	assert.Equal(t, 0, rt.Slots().InFlight())
}
