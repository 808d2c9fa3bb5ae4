package concurrency

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokens counts the tokens a test's queue gives back through Release.
type tokens struct {
	mu       sync.Mutex
	released []int
}

func (k *tokens) release(t int) {
	k.mu.Lock()
	k.released = append(k.released, t)
	k.mu.Unlock()
}

func (k *tokens) got() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int(nil), k.released...)
}

func newIntQueue(t *testing.T, cfg QueueConfig[int]) (*Queue[int], *tokens) {
	t.Helper()
	k := &tokens{}
	if cfg.Release == nil {
		cfg.Release = k.release
	}
	q, err := NewQueue(cfg)
	require.NoError(t, err)
	t.Cleanup(q.Close)
	return q, k
}

type result struct {
	token int
	err   error
}

// startWaiter starts an Acquire and returns once the queue holds want
// waiters, so that the order of waiters is known.
func startWaiter(t *testing.T, ctx context.Context, q *Queue[int], want int) <-chan result {
	t.Helper()
	out := make(chan result, 1)
	go func() {
		tok, err := q.Acquire(ctx)
		out <- result{tok, err}
	}()
	require.Eventually(t, func() bool { return q.Len() == want }, 10*time.Second, time.Millisecond)
	return out
}

func TestQueueFIFO(t *testing.T) {
	q, k := newIntQueue(t, QueueConfig[int]{MaxWait: time.Hour})
	const n = 8
	waiters := make([]<-chan result, n)
	for i := range n {
		waiters[i] = startWaiter(t, context.Background(), q, i+1)
	}
	for i := range n {
		require.True(t, q.Handoff(100+i))
	}
	for i, w := range waiters {
		r := <-w
		require.NoError(t, r.err)
		assert.Equal(t, 100+i, r.token, "waiter %d served out of order", i)
	}
	assert.Equal(t, 0, q.Len())
	assert.False(t, q.Handoff(1), "no waiter: the caller keeps the token")
	assert.Empty(t, k.got())
}

func TestQueueBound(t *testing.T) {
	q, _ := newIntQueue(t, QueueConfig[int]{MaxWaiters: 2, MaxWait: time.Hour})
	a := startWaiter(t, context.Background(), q, 1)
	b := startWaiter(t, context.Background(), q, 2)
	assert.Equal(t, 2, q.Cap())

	_, err := q.Acquire(context.Background())
	require.ErrorIs(t, err, ErrQueueFull, "a full queue rejects at once")
	assert.Equal(t, 2, q.Len())

	require.True(t, q.Handoff(1))
	require.NoError(t, (<-a).err)
	c := startWaiter(t, context.Background(), q, 2) // room again
	require.True(t, q.Handoff(2))
	require.True(t, q.Handoff(3))
	assert.Equal(t, 2, (<-b).token)
	assert.Equal(t, 3, (<-c).token)
}

func TestQueueDeadline(t *testing.T) {
	q, k := newIntQueue(t, QueueConfig[int]{MaxWait: time.Millisecond})
	_, err := q.Acquire(context.Background())
	require.ErrorIs(t, err, ErrQueueTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "queue time is not the request's deadline")
	assert.Equal(t, 0, q.Len(), "a timed-out waiter leaves the queue")
	assert.False(t, q.Handoff(7))
	assert.Empty(t, k.got())
}

func TestQueueContextDeadlineBeforeMaxWait(t *testing.T) {
	q, _ := newIntQueue(t, QueueConfig[int]{MaxWait: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := q.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, ErrQueueTimeout)
	assert.Equal(t, 0, q.Len())
}

func TestQueueCancellationRemovesWaiter(t *testing.T) {
	q, k := newIntQueue(t, QueueConfig[int]{MaxWait: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	first := startWaiter(t, ctx, q, 1)
	second := startWaiter(t, context.Background(), q, 2)
	cancel()
	r := <-first
	require.ErrorIs(t, r.err, context.Canceled)
	require.Eventually(t, func() bool { return q.Len() == 1 }, 10*time.Second, time.Millisecond)
	require.True(t, q.Handoff(5), "the token goes to the remaining waiter")
	assert.Equal(t, 5, (<-second).token)
	assert.Empty(t, k.got())

	// A context already done never queues.
	_, err := q.Acquire(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 0, q.Len())
}

func TestQueueClose(t *testing.T) {
	q, _ := newIntQueue(t, QueueConfig[int]{MaxWait: time.Hour})
	a := startWaiter(t, context.Background(), q, 1)
	b := startWaiter(t, context.Background(), q, 2)
	q.Close()
	q.Close() // idempotent
	require.ErrorIs(t, (<-a).err, ErrClosed)
	require.ErrorIs(t, (<-b).err, ErrClosed)
	assert.False(t, q.Handoff(1))
	_, err := q.Acquire(context.Background())
	require.ErrorIs(t, err, ErrClosed)
}

func TestQueueReleaseWithoutWaiterGivesBack(t *testing.T) {
	q, k := newIntQueue(t, QueueConfig[int]{})
	q.Release(3)
	assert.Equal(t, []int{3}, k.got())
	assert.Equal(t, DefaultMaxWaiters, q.Cap())
}

func TestQueueTryAcquireFastPathKeepsFIFO(t *testing.T) {
	free := NewSlots(Shared, 1)
	require.True(t, free.TryAcquire()) // no capacity yet
	q, _ := newIntQueue(t, QueueConfig[int]{
		MaxWait:    time.Hour,
		TryAcquire: func() (int, bool) { return 1, free.TryAcquire() },
		Release:    func(int) { free.Release() },
	})
	w := startWaiter(t, context.Background(), q, 1)
	// Capacity appears: Release gives it to the waiter, not to a newcomer.
	q.Release(1)
	require.NoError(t, (<-w).err)
	assert.Equal(t, 1, free.InFlight())
	q.Release(1)
	assert.Equal(t, 0, free.InFlight())
	// Nobody waits: Acquire takes capacity without queueing.
	tok, err := q.Acquire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, tok)
	assert.Equal(t, 0, q.Len())
}

func TestQueueDispatchServesWaitersFromNewCapacity(t *testing.T) {
	inst := NewSlots(Shared, 1)
	require.True(t, inst.TryAcquire())
	q, _ := newIntQueue(t, QueueConfig[int]{
		MaxWait:    time.Hour,
		TryAcquire: func() (int, bool) { return 0, inst.TryAcquire() },
		Release:    func(int) { inst.Release() },
	})
	a := startWaiter(t, context.Background(), q, 1)
	b := startWaiter(t, context.Background(), q, 2)
	c := startWaiter(t, context.Background(), q, 3)
	inst.SetLimit(3) // e.g. a new instance became Ready
	q.Dispatch()
	require.NoError(t, (<-a).err)
	require.NoError(t, (<-b).err)
	assert.Equal(t, 1, q.Len(), "only two slots appeared")
	q.Release(0)
	require.NoError(t, (<-c).err)
	assert.Equal(t, 3, inst.InFlight())
}

func TestNewQueueValidates(t *testing.T) {
	for _, cfg := range []QueueConfig[int]{
		{},
		{Release: func(int) {}, MaxWaiters: -1},
		{Release: func(int) {}, MaxWait: -time.Second},
	} {
		_, err := NewQueue(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig)
	}
}

// TestQueueHandoffRacesCancellation races a handoff against the waiter's
// cancellation many times. Every token must end in exactly one place: the
// waiter (Acquire returned it), the release function (the waiter got it
// after cancelling and gave it back), or the caller (Handoff returned
// false).
func TestQueueHandoffRacesCancellation(t *testing.T) {
	var released atomic.Int64
	q, err := NewQueue(QueueConfig[int]{
		MaxWait: time.Hour,
		Release: func(int) { released.Add(1) },
	})
	require.NoError(t, err)
	defer q.Close()

	const rounds = 2000
	var toWaiter, kept int64
	for i := range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan result, 1)
		go func() {
			tok, err := q.Acquire(ctx)
			out <- result{tok, err}
		}()
		for q.Len() == 0 {
			runtime.Gosched()
		}
		go cancel()
		if i%2 == 0 {
			runtime.Gosched()
		}
		handed := q.Handoff(i)
		r := <-out
		cancel()
		switch {
		case !handed:
			kept++
			require.Error(t, r.err)
		case r.err == nil:
			toWaiter++
			assert.Equal(t, i, r.token)
		default:
			require.ErrorIs(t, r.err, context.Canceled)
		}
		require.Equal(t, 0, q.Len())
	}
	assert.Equal(t, int64(rounds), toWaiter+kept+released.Load(), "a token was lost")
	t.Logf("to waiter %d, kept by releaser %d, given back by the cancelled waiter %d", toWaiter, kept, released.Load())
}

// TestQueueHammerNoLeakNoLostWakeup runs many goroutines over a small pool
// of slots through the queue, some cancelling early; under -race. No slot
// may leak and no waiter may be forgotten while capacity is free (with an
// hour of MaxWait, a lost wakeup would leave a goroutine stuck).
func TestQueueHammerNoLeakNoLostWakeup(t *testing.T) {
	slots := NewSlots(Shared, 3)
	q, err := NewQueue(QueueConfig[struct{}]{
		MaxWaiters: 1000,
		MaxWait:    time.Hour,
		TryAcquire: func() (struct{}, bool) { return struct{}{}, slots.TryAcquire() },
		Release:    func(struct{}) { slots.Release() },
	})
	require.NoError(t, err)
	defer q.Close()

	var inside, maxInside, served, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%7 == 0 {
					cancel() // some give up at once, racing the handoffs
				}
				_, err := q.Acquire(ctx)
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("unexpected error: %v", err)
					}
					gaveUp.Add(1)
					continue
				}
				n := inside.Add(1)
				for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
				}
				served.Add(1)
				runtime.Gosched()
				inside.Add(-1)
				q.Release(struct{}{})
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("waiters stuck with %d free slots and %d waiting: lost wakeup", slots.Free(), q.Len())
	}
	assert.LessOrEqual(t, maxInside.Load(), int64(3))
	assert.Equal(t, 0, slots.InFlight(), "a slot leaked")
	assert.Equal(t, 0, q.Len())
	assert.Equal(t, int64(16*300), served.Load()+gaveUp.Load())
	t.Logf("served %d, gave up %d", served.Load(), gaveUp.Load())
}

// TestQueueHammerTimeouts mixes queue-time deadlines into the hammer: a
// waiter that times out never takes a slot with it.
func TestQueueHammerTimeouts(t *testing.T) {
	slots := NewSlots(Shared, 2)
	q, err := NewQueue(QueueConfig[struct{}]{
		MaxWaiters: 4,
		MaxWait:    50 * time.Microsecond,
		TryAcquire: func() (struct{}, bool) { return struct{}{}, slots.TryAcquire() },
		Release:    func(struct{}) { slots.Release() },
	})
	require.NoError(t, err)
	defer q.Close()
	var outcomes sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				_, err := q.Acquire(context.Background())
				if err != nil {
					if !errors.Is(err, ErrQueueTimeout) && !errors.Is(err, ErrQueueFull) {
						t.Errorf("unexpected error: %v", err)
					}
					outcomes.Store(err, true)
					continue
				}
				runtime.Gosched()
				q.Release(struct{}{})
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 0, slots.InFlight(), "a slot leaked")
	assert.Equal(t, 0, q.Len())
}

// TestQueueNoLostWakeup frees capacity exactly between Acquire's failed
// fast path and its entry into the queue, the window in which a releaser
// finds no waiter to hand to. The waiter must still get the slot instead
// of waiting out its deadline.
func TestQueueNoLostWakeup(t *testing.T) {
	slots := NewSlots(Shared, 1)
	require.True(t, slots.TryAcquire()) // held by a request about to finish
	var q *Queue[struct{}]
	calls := 0
	q, err := NewQueue(QueueConfig[struct{}]{
		MaxWait: time.Hour,
		TryAcquire: func() (struct{}, bool) {
			calls++
			ok := slots.TryAcquire()
			if calls == 1 {
				// The request finishes now: nobody is queued yet, so its
				// slot goes back to the instance.
				q.Release(struct{}{})
			}
			return struct{}{}, ok
		},
		Release: func(struct{}) { slots.Release() },
	})
	require.NoError(t, err)
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = q.Acquire(ctx)
	require.NoError(t, err, "the freed slot was not noticed")
	assert.Equal(t, 1, slots.InFlight())
	assert.Equal(t, 0, q.Len())
}
