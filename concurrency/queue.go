package concurrency

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [QueueConfig].
const (
	// DefaultMaxWaiters bounds a wait queue: a burst that arrives during a
	// cold start costs at most this many parked goroutines per function.
	DefaultMaxWaiters = 1000
	// DefaultMaxWait is the queue-time deadline: long enough to ride out a
	// slow cold start (code fetch, process start, init hook), shorter than
	// the request timeouts FaaS platforms default to (60 s and more).
	DefaultMaxWait = 30 * time.Second
)

// QueueConfig configures a [Queue].
type QueueConfig[T any] struct {
	// MaxWaiters bounds the number of waiters; an Acquire beyond it fails
	// at once with ErrQueueFull. Zero means DefaultMaxWaiters.
	MaxWaiters int
	// MaxWait is how long one Acquire may wait before it fails with
	// ErrQueueTimeout, separate from the deadline of the context passed to
	// Acquire (whichever comes first ends the wait). Zero means
	// DefaultMaxWait.
	MaxWait time.Duration
	// Release gives back a token that no waiter took: a waiter that got a
	// token after its context ended, or [Queue.Release] with nobody
	// waiting. Required.
	Release func(T)
	// TryAcquire, optional, takes a token without waiting (for example a
	// free slot on any Ready instance of the function). When it is set,
	// Acquire first tries it (unless others are already waiting, to keep
	// FIFO order), tries it again right after queueing, and
	// [Queue.Release] and [Queue.Dispatch] use it to serve waiters; that
	// closes the window in which capacity freed just before a waiter
	// queued would otherwise go unnoticed until the next release.
	TryAcquire func() (T, bool)
}

// Queue is a bounded FIFO of goroutines waiting for a token of type T,
// typically a concurrency slot on an instance: the cold-start path parks a
// request here when no instance has a free slot, and whoever frees capacity
// hands its token straight to the longest waiter.
//
// Waiters call [Queue.Acquire]; whoever frees capacity calls
// [Queue.Handoff] with the token it still holds and gives the token back
// itself only when Handoff returns false, or calls [Queue.Release], which
// does both. A token handed off is never lost: when the waiter's context
// ends or its queue time runs out at the same moment, either the handoff
// fails (and the caller keeps the token) or the waiter receives the token
// and passes it on to the next waiter or gives it back through
// QueueConfig.Release.
//
// All methods are safe for concurrent use. A Queue starts no goroutines;
// [Queue.Close] wakes every waiter.
type Queue[T any] struct {
	cfg     QueueConfig[T]
	mu      sync.Mutex
	head    *waiter[T] // guarded by mu; the longest waiter
	tail    *waiter[T] // guarded by mu
	n       int        // guarded by mu
	waiting atomic.Int64
	closed  atomic.Bool
	done    chan struct{} // closed by Close
	once    sync.Once
	pool    sync.Pool // *waiter[T], reused so that a wait does not allocate
}

// Waiter states, guarded by Queue.mu.
const (
	stateQueued  = iota // in the list
	stateServed         // removed by a handoff; its token is in ch
	stateDropped        // removed by Close; nothing in ch
	stateGone           // removed by its own goroutine
)

type waiter[T any] struct {
	ch         chan T // capacity 1; receives exactly one handoff
	timer      *time.Timer
	prev, next *waiter[T]
	state      int
}

// NewQueue returns an empty queue. It returns an error wrapping
// [ErrInvalidConfig] when cfg.Release is nil or a bound is negative.
func NewQueue[T any](cfg QueueConfig[T]) (*Queue[T], error) {
	switch {
	case cfg.Release == nil:
		return nil, fmt.Errorf("%w: QueueConfig.Release is required", ErrInvalidConfig)
	case cfg.MaxWaiters < 0:
		return nil, fmt.Errorf("%w: MaxWaiters %d < 0", ErrInvalidConfig, cfg.MaxWaiters)
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("%w: MaxWait %v < 0", ErrInvalidConfig, cfg.MaxWait)
	}
	if cfg.MaxWaiters == 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	return &Queue[T]{cfg: cfg, done: make(chan struct{})}, nil
}

// Len returns the number of waiters.
func (q *Queue[T]) Len() int { return int(q.waiting.Load()) }

// Cap returns the maximum number of waiters.
func (q *Queue[T]) Cap() int { return q.cfg.MaxWaiters }

// Acquire waits for a token in FIFO order. It returns the token, or:
// [ErrQueueFull] at once when the queue is at its bound; [ErrQueueTimeout]
// after QueueConfig.MaxWait; an error wrapping ctx.Err() when ctx ends
// first; [ErrClosed] when the queue is closed. A waiter that gives up is
// removed from the queue at once, and a token that reached it in that
// instant is passed on, never leaked. A wait allocates nothing in the
// steady state.
func (q *Queue[T]) Acquire(ctx context.Context) (T, error) {
	var zero T
	if q.closed.Load() {
		return zero, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("concurrency: queue wait: %w", err)
	}
	if q.cfg.TryAcquire != nil && q.waiting.Load() == 0 {
		if t, ok := q.cfg.TryAcquire(); ok {
			return t, nil
		}
	}

	w := q.getWaiter()
	q.mu.Lock()
	switch {
	case q.closed.Load():
		q.mu.Unlock()
		q.pool.Put(w)
		return zero, ErrClosed
	case q.n >= q.cfg.MaxWaiters:
		q.mu.Unlock()
		q.pool.Put(w)
		return zero, ErrQueueFull
	}
	q.pushBack(w)
	q.mu.Unlock()

	// Capacity given back between the fast path and pushBack saw no waiter
	// and was not handed to us; look again now that we are visible.
	// (Release gives back, then looks for waiters; we publish ourselves,
	// then look for capacity: with sequentially consistent atomics on both
	// sides, at least one of the two sees the other.)
	if q.cfg.TryAcquire != nil {
		if t, ok := q.cfg.TryAcquire(); ok {
			if extra, served := q.leave(w); served {
				q.Release(extra)
			}
			return t, nil
		}
	}

	w.timer.Reset(q.cfg.MaxWait)
	var err error
	select {
	case t := <-w.ch:
		w.timer.Stop()
		q.pool.Put(w)
		return t, nil
	case <-ctx.Done():
		err = fmt.Errorf("concurrency: queue wait: %w", ctx.Err())
	case <-w.timer.C:
		err = ErrQueueTimeout
	case <-q.done:
		err = ErrClosed
	}
	w.timer.Stop()
	t, served := q.leave(w)
	if !served {
		return zero, err
	}
	if err == ErrClosed {
		// Served before the queue closed: the token is ours to use.
		return t, nil
	}
	// A handoff won the race against our cancellation: pass it on.
	q.Release(t)
	return zero, err
}

// leave takes w out of the queue. When a handoff already removed it, leave
// returns the token it carried and served == true. It recycles w.
func (q *Queue[T]) leave(w *waiter[T]) (t T, served bool) {
	q.mu.Lock()
	state := w.state
	if state == stateQueued {
		q.remove(w)
	}
	w.state = stateGone
	q.mu.Unlock()
	if state == stateServed {
		t, served = <-w.ch, true // sent while the handoff held mu: already buffered
	}
	q.pool.Put(w)
	return t, served
}

// Handoff gives t to the longest waiter and reports whether one took it.
// When it returns false, the caller still holds t and must give it back
// itself (or call [Queue.Release] instead, which does). Handoff never
// blocks.
func (q *Queue[T]) Handoff(t T) bool {
	if q.waiting.Load() == 0 {
		return false
	}
	q.mu.Lock()
	w := q.head
	if w == nil {
		q.mu.Unlock()
		return false
	}
	q.remove(w)
	w.state = stateServed
	w.ch <- t // capacity 1 and empty: never blocks
	q.mu.Unlock()
	return true
}

// Release hands t to the longest waiter or, when nobody waits, gives it
// back through QueueConfig.Release; then, when QueueConfig.TryAcquire is
// set, it serves any waiter that queued meanwhile (see [Queue.Dispatch]).
func (q *Queue[T]) Release(t T) {
	if q.Handoff(t) {
		return
	}
	q.cfg.Release(t)
	q.Dispatch()
}

// Dispatch serves waiters, oldest first, with tokens from
// QueueConfig.TryAcquire until the queue is empty or TryAcquire fails. Call
// it when capacity appears other than through a release: a new instance
// became Ready, or a limit was raised. Without TryAcquire it does nothing.
func (q *Queue[T]) Dispatch() {
	if q.cfg.TryAcquire == nil {
		return
	}
	for q.waiting.Load() > 0 {
		t, ok := q.cfg.TryAcquire()
		if !ok {
			return
		}
		if !q.Handoff(t) {
			// The waiters left meanwhile; the loop condition looks again.
			q.cfg.Release(t)
		}
	}
}

// Close wakes every waiter with [ErrClosed] and makes later calls to
// Acquire fail the same way; Handoff then returns false. Close is
// idempotent.
func (q *Queue[T]) Close() {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed.Store(true)
		for w := q.head; w != nil; {
			next := w.next
			q.remove(w)
			w.state = stateDropped
			w = next
		}
		q.mu.Unlock()
		close(q.done)
	})
}

func (q *Queue[T]) getWaiter() *waiter[T] {
	if w, ok := q.pool.Get().(*waiter[T]); ok {
		w.state = stateQueued
		return w
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter[T]{ch: make(chan T, 1), timer: t, state: stateQueued}
}

// pushBack and remove keep the intrusive list; callers hold mu.
func (q *Queue[T]) pushBack(w *waiter[T]) {
	w.prev, w.next = q.tail, nil
	if q.tail == nil {
		q.head = w
	} else {
		q.tail.next = w
	}
	q.tail = w
	q.n++
	q.waiting.Add(1)
}

func (q *Queue[T]) remove(w *waiter[T]) {
	if w.prev == nil {
		q.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		q.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
	q.n--
	q.waiting.Add(-1)
}
