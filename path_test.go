package faas

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

func TestAdmitTakesAFreeSlotAndReleasesEverything(t *testing.T) {
	d := newRoutedDataplane(t, 1, 2, func(c *Config) { c.DisableShedding = true })
	fn := d.lookup("hot")
	now := time.Now()
	l, err := admitCall(d, context.Background(), fn, "c", loadshed.Default, now)
	require.NoError(t, err)
	assert.False(t, l.waited)
	assert.EqualValues(t, 1, fn.demand.Load())
	assert.Equal(t, 1, d.router.Stats("hot").InFlight)
	l.end(now, router.Success)
	assert.EqualValues(t, 0, fn.demand.Load())
	assert.Equal(t, 0, d.router.Stats("hot").InFlight)
}

func TestAdmitRefusals(t *testing.T) {
	tests := []struct {
		name      string
		instances int
		edit      func(*FunctionSpec)
		hold      int // requests admitted and held first
		code      lifecycle.ErrorCode
	}{
		{"function-wide limit", 2, func(s *FunctionSpec) { s.MaxConcurrency = 1 }, 1, lifecycle.CodeConcurrencyLimit},
		{"no capacity within the queue timeout", 0, func(s *FunctionSpec) { s.QueueTimeout = 20 * time.Millisecond }, 0, lifecycle.CodeTimeout},
		{"every slot busy, queue timeout", 1, func(s *FunctionSpec) { s.Concurrency = 1; s.QueueTimeout = 20 * time.Millisecond }, 1, lifecycle.CodeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newRoutedDataplane(t, 1, 0, func(c *Config) { c.DisableShedding = true })
			spec := d.lookup("hot").version().spec
			tt.edit(&spec)
			require.NoError(t, d.Deploy(context.Background(), spec))
			fn := d.lookup("hot")
			for i := range tt.instances {
				addReadyInstance(t, d, "hot", "i"+string(rune('a'+i)), time.Now())
			}
			ctx := context.Background()
			var held []call
			for range tt.hold {
				l, err := admitCall(d, ctx, fn, "c", loadshed.Default, time.Now())
				require.NoError(t, err)
				held = append(held, l)
			}
			_, err := admitCall(d, ctx, fn, "c", loadshed.Default, time.Now())
			var pe *lifecycle.Error
			require.True(t, errors.As(err, &pe), "%v", err)
			assert.Equal(t, tt.code, pe.Code)
			assert.EqualValues(t, tt.hold, fn.demand.Load(), "a refused request leaves no demand behind")
			for _, l := range held {
				l.end(time.Now(), router.Success)
			}
			assert.EqualValues(t, 0, fn.demand.Load())
			assert.Equal(t, 0, fn.limit.InFlight())
		})
	}
}

func TestQueueFullIsRefusedAtOnce(t *testing.T) {
	d := newRoutedDataplane(t, 1, 0, func(c *Config) { c.DisableShedding = true; c.Limits.MaxQueue = 1 })
	fn := d.lookup("hot")
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() {
		_, err := admitCall(d, ctx, fn, "c", loadshed.Default, time.Now())
		waiting <- err
	}()
	require.Eventually(t, func() bool { return fn.queue.Len() == 1 }, 5*time.Second, time.Millisecond)
	_, err := admitCall(d, context.Background(), fn, "c", loadshed.Default, time.Now())
	require.ErrorIs(t, err, lifecycle.CodeConcurrencyLimit)
	cancel()
	require.ErrorIs(t, <-waiting, context.Canceled)
	assert.EqualValues(t, 0, fn.demand.Load())
}

func TestReleasedSlotIsHandedToWaiters(t *testing.T) {
	d := newRoutedDataplane(t, 1, 0, func(c *Config) { c.DisableShedding = true })
	spec := d.lookup("hot").version().spec
	spec.Concurrency = 1
	require.NoError(t, d.Deploy(context.Background(), spec))
	fn := d.lookup("hot")
	addReadyInstance(t, d, "hot", "only", time.Now())
	holder, err := admitCall(d, context.Background(), fn, "c", loadshed.Default, time.Now())
	require.NoError(t, err)

	var wg sync.WaitGroup
	got := make(chan call, 2)
	for i := range 2 {
		// The queue length to wait for is fixed before the goroutine
		// starts: computed after, it could already count this waiter and
		// wait for one that never comes.
		want := i + 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := admitCall(d, context.Background(), fn, "c", loadshed.Default, time.Now())
			if err == nil {
				got <- l
			}
		}()
		require.Eventually(t, func() bool { return fn.queue.Len() == want }, 5*time.Second, time.Millisecond)
	}
	holder.end(time.Now(), router.Success) // handed straight to the first waiter
	first := <-got
	assert.True(t, first.waited)
	first.end(time.Now(), router.Success)
	second := <-got
	second.end(time.Now(), router.Success)
	wg.Wait()
	assert.EqualValues(t, 0, fn.demand.Load())
	assert.Equal(t, 0, d.router.Stats("hot").InFlight)
}

func TestShedRequestsCarryRetryAfter(t *testing.T) {
	d := newRoutedDataplane(t, 1, 4, func(c *Config) {
		c.Shedding = loadshed.Config{Capacity: 2, Burst: -1, CoolOff: 2 * time.Second}
	})
	fn := d.lookup("hot")
	ctx := context.Background()
	now := time.Now()
	var held []call
	var shedErr error
	// Hold more than the capacity across control intervals: the detector
	// turns shedding on and further requests are refused.
	for i := 0; i < 200 && shedErr == nil; i++ {
		now = now.Add(10 * time.Millisecond)
		l, err := admitCall(d, ctx, fn, "c", loadshed.Default, now)
		if err != nil {
			shedErr = err
			break
		}
		held = append(held, l)
	}
	require.Error(t, shedErr, "an overloaded dataplane sheds")
	require.ErrorIs(t, shedErr, lifecycle.CodeShed)
	after, ok := RetryAfter(shedErr)
	require.True(t, ok)
	assert.GreaterOrEqual(t, after, time.Second)
	for _, l := range held {
		l.end(now, router.Success)
	}
}

// admitCall admits a request for fn as the gateway and Invoke do.
func admitCall(d *Dataplane, ctx context.Context, fn *function, caller string, prio loadshed.Priority, now time.Time) (call, error) {
	c := d.newCall(fn, caller, prio, now)
	err := c.admit(ctx)
	return c, err
}
