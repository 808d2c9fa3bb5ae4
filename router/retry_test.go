package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		o                  Outcome
		plain, idempotent  bool
		failure, reachedFn bool
	}{
		{Success, false, false, false, true},
		{Canceled, false, false, false, true},
		{Rejected, true, true, false, false},
		{ConnectFailed, true, true, true, false},
		{NotReady, true, true, true, false},
		{Reassigned, true, true, false, false},
		{InstanceFailed, false, true, true, true},
		{Outcome(99), false, false, false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.plain, Retryable(tt.o, false), "%s, not idempotent", tt.o)
		assert.Equal(t, tt.idempotent, Retryable(tt.o, true), "%s, idempotent", tt.o)
		assert.Equal(t, tt.failure, tt.o.Failure(), "%s counts against the breaker", tt.o)
		assert.Equal(t, tt.reachedFn, tt.o.Reached(), "%s reached the function", tt.o)
		// Never retry what reached the function unless idempotent.
		if tt.o.Reached() {
			assert.False(t, Retryable(tt.o, false), "%s", tt.o)
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route to host")}
	read := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, Success},
		{context.Canceled, Canceled},
		{fmt.Errorf("proxy: %w", context.Canceled), Canceled},
		{context.DeadlineExceeded, InstanceFailed},
		{lifecycle.Errorf(lifecycle.CodeInstanceReassigned, "serves g"), Reassigned},
		{lifecycle.CodeNoFunction, Reassigned},
		{lifecycle.CodeNotReady, NotReady},
		{lifecycle.CodeConcurrencyLimit, Rejected},
		{lifecycle.CodeFunctionExited, Exited},
		{lifecycle.CodeTimeout, InstanceFailed},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), ConnectFailed},
		{dial, ConnectFailed},
		{read, InstanceFailed},
		{errors.New("something else"), InstanceFailed},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, OutcomeOf(tt.err), "%v", tt.err)
	}
}

func TestRetryBudgetLimit(t *testing.T) {
	b := RetryBudget{Ratio: 0.2, Min: 3}
	for active, want := range map[int]int{0: 3, 10: 3, 15: 3, 19: 3, 20: 4, 100: 20, 1001: 200} {
		assert.Equal(t, want, b.Limit(active), "active %d", active)
	}
	assert.Equal(t, 0, RetryBudget{Ratio: 0.5, Min: 0}.Limit(1))
}

func TestRetryGoesElsewhereOnceWhenSafe(t *testing.T) {
	fx := newFixture(t, Config{Policy: FirstAvailable()})
	a := fx.add("f", "a", 10)
	b := fx.add("f", "b", 10)

	rt := fx.pick("f")
	require.Same(t, a, rt.Instance(), "first-available starts with a")
	rt.Release(t0, ConnectFailed)
	again, err := fx.r.Retry(rt, ConnectFailed, false)
	require.NoError(t, err)
	assert.Same(t, b, again.Instance(), "the retry avoids the failed instance, whatever the policy says")
	assert.True(t, again.Retried())
	again.Release(t0, ConnectFailed)

	_, err = fx.r.Retry(again, ConnectFailed, true)
	assert.ErrorIs(t, err, ErrNotRetryable, "a request is retried once")

	rt = fx.pick("f")
	rt.Release(t0, InstanceFailed)
	_, err = fx.r.Retry(rt, InstanceFailed, false)
	assert.ErrorIs(t, err, ErrNotRetryable, "reached the function, not idempotent")
	again, err = fx.r.Retry(rt, InstanceFailed, true)
	require.NoError(t, err, "idempotent")
	again.Release(t0, Success)

	_, err = fx.r.Retry(Route{}, ConnectFailed, true)
	assert.ErrorIs(t, err, ErrNotRetryable)
	for _, o := range []Outcome{Success, Canceled} {
		_, err = fx.r.Retry(rt, o, true)
		assert.ErrorIs(t, err, ErrNotRetryable, "%s", o)
	}
	f, _ := fx.r.fns.Get("f")
	assert.Equal(t, int64(0), f.retrying.Load(), "every retry released its budget")
}

func TestRetryNeedsAnotherInstance(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 10)
	rt := fx.pick("f")
	rt.Release(t0, NotReady)
	_, err := fx.r.Retry(rt, NotReady, false)
	assert.ErrorIs(t, err, ErrNoRoute, "the only instance is the failed one")

	b := fx.add("f", "b", 1)
	held, err := fx.r.acquireInstance(b)
	require.NoError(t, err)
	_, err = fx.r.Retry(rt, NotReady, false)
	assert.ErrorIs(t, err, ErrNoCapacity, "the other instance is full")
	held.Release(t0, Success)

	// A reassigned instance is gone by the time of the retry.
	rt, err = fx.r.acquireInstance(a)
	require.NoError(t, err)
	rt.Release(t0, Reassigned)
	again, err := fx.r.Retry(rt, Reassigned, false)
	require.NoError(t, err)
	assert.Same(t, b, again.Instance())
	again.Release(t0, Success)

	require.True(t, fx.r.Remove(t0, b, "gone"))
	_, err = fx.r.Retry(again, ConnectFailed, false)
	assert.ErrorIs(t, err, ErrNotRetryable)
	_, err = fx.r.Retry(rt, ConnectFailed, false)
	assert.ErrorIs(t, err, ErrNoRoute, "the function has no routes left")
}

func TestRetryBudgetCapsRetriesInFlight(t *testing.T) {
	fx := newFixture(t, Config{Retry: RetryBudget{Ratio: 0.2, Min: 3}})
	for i := range 4 {
		fx.add("f", fmt.Sprintf("i%d", i), 100)
	}
	failed := fx.pick("f")
	failed.Release(t0, ConnectFailed)

	// Few active requests: the minimum of 3 applies.
	var retries []Route
	for range 3 {
		rt, err := fx.r.Retry(failed, ConnectFailed, false)
		require.NoError(t, err)
		retries = append(retries, rt)
	}
	_, err := fx.r.Retry(failed, ConnectFailed, false)
	assert.ErrorIs(t, err, ErrRetryBudget)

	// With 40 requests in flight (3 of them retries), 20 % is 8; each
	// retry is itself active, so retries stop at 9 of 46.
	var active []Route
	for range 37 {
		active = append(active, fx.pick("f"))
	}
	more := 0
	for {
		rt, err := fx.r.Retry(failed, ConnectFailed, false)
		if err != nil {
			assert.ErrorIs(t, err, ErrRetryBudget)
			break
		}
		retries = append(retries, rt)
		more++
		inFlight := fx.r.Stats("f").InFlight
		require.LessOrEqual(t, float64(len(retries)), max(3, 0.2*float64(inFlight)), "budget respected")
	}
	assert.Equal(t, 6, more)
	assert.Equal(t, 46, fx.r.Stats("f").InFlight)

	// Finished retries give their budget back.
	for _, rt := range retries {
		rt.Release(t0, Success)
	}
	for _, rt := range active {
		rt.Release(t0, Success)
	}
	rt, err := fx.r.Retry(failed, ConnectFailed, false)
	require.NoError(t, err)
	rt.Release(t0, Success)
}
