package faas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// lease is an admitted request that holds a slot on an instance: what the
// path of an invocation carries from admission to release.
type lease struct {
	fn     *function
	route  router.Route
	ticket loadshed.Ticket
	shed   bool // ticket must be Done
	// limited: the function-wide limit was acquired and must be released
	// (functions without one skip its atomic operations).
	limited bool
	waited  bool // the request waited for capacity
	// started: the shedder's ticket was told the request stopped waiting.
	started bool
}

// admit runs the admission half of an invocation: the load shedder, the
// function-wide limit, then a slot on an instance, waiting in the
// function's queue (bounded by the spec's QueueTimeout) while cold starts
// bring capacity. It does not allocate when a slot is free.
func (d *Dataplane) admit(ctx context.Context, fn *function, v *version, caller string, prio loadshed.Priority, now time.Time) (lease, error) {
	l, err := d.admitShed(fn, caller, prio, now)
	if err != nil {
		return l, err
	}
	return d.acquire(ctx, l, v, now)
}

// admitShed is the load shedder's part of admission: the one that costs
// nothing but a few atomic operations, so the gateway runs it before it
// reads a body.
func (d *Dataplane) admitShed(fn *function, caller string, prio loadshed.Priority, now time.Time) (lease, error) {
	l := lease{fn: fn}
	if d.shed != nil {
		t, err := d.shed.Admit(now, caller, prio)
		if err != nil {
			return l, shedError(err)
		}
		l.ticket, l.shed = t, true
	}
	return l, nil
}

// acquire is the rest of admission, after admitShed: the function-wide
// limit and a slot. On error, l is settled.
func (d *Dataplane) acquire(ctx context.Context, l lease, v *version, now time.Time) (lease, error) {
	fn := l.fn
	if v.spec.MaxConcurrency > 0 {
		if err := fn.limit.Acquire(); err != nil {
			l.done(now, loadshed.Ignored)
			return l, errFunctionLimit(fn.id, fn.limit.Limit())
		}
		l.limited = true
	}
	fn.demand.Add(1)
	rt, err := d.router.Pick(fn.id)
	if err == nil {
		l.route = rt
		if l.shed {
			l.ticket.Started(now)
			l.started = true
		}
		return l, nil
	}
	if errors.Is(err, router.ErrNoRoute) && l.shed {
		// Waiting for a cold start is not queueing behind an overloaded
		// dataplane: the shedder must not read it as queueing delay.
		l.ticket.Started(now)
		l.started = true
	}
	return d.wait(ctx, l, v, now)
}

// wait is the slow path of admit: no instance has a free slot.
func (d *Dataplane) wait(ctx context.Context, l lease, v *version, now time.Time) (lease, error) {
	fn := l.fn
	l.waited = true
	d.wantCapacity(fn, v, fn.queue.Len()+1)
	qctx, cancel := context.WithTimeout(ctx, v.spec.QueueTimeout)
	rt, err := fn.queue.Acquire(qctx)
	cancel()
	end := time.Now()
	if err == nil {
		l.route = rt
		if l.shed && !l.started {
			l.ticket.Started(end)
			l.started = true
		}
		return l, nil
	}
	l.releaseRest(end)
	switch {
	case errors.Is(err, concurrency.ErrQueueFull):
		l.done(end, loadshed.Dropped)
		return l, lifecycle.Errorf(lifecycle.CodeConcurrencyLimit, "function %s: %d requests already wait for capacity", fn.id, fn.queue.Cap())
	case errors.Is(err, concurrency.ErrClosed) && d.state.Load() == stateClosed:
		l.done(end, loadshed.Ignored)
		return l, lifecycle.Errorf(lifecycle.CodeNotReady, "the dataplane is shutting down")
	case errors.Is(err, concurrency.ErrClosed):
		l.done(end, loadshed.Ignored)
		return l, lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %s was removed", fn.id)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		l.done(end, loadshed.Ignored)
		return l, fmt.Errorf("faas: waiting for capacity: %w", ctx.Err())
	default:
		// The queue time or the request's deadline ran out: the function
		// could not get capacity in time, which is a sign of overload.
		l.done(end, loadshed.Dropped)
		return l, lifecycle.Errorf(lifecycle.CodeTimeout, "function %s: no capacity within %v (cold start or queue)", fn.id, min(v.spec.QueueTimeout, end.Sub(now)).Round(time.Millisecond))
	}
}

func (l *lease) done(now time.Time, o loadshed.Outcome) {
	if l.shed {
		l.shed = false
		l.ticket.Done(now, o)
	}
}

// release ends an admitted request: the slot (which the router may hand to
// a queued request), then everything settle releases.
func (l *lease) release(now time.Time, o router.Outcome) {
	l.route.Release(now, o)
	l.settle(now, o)
}

// settle ends an admitted request whose slot is already released: the
// function-wide limit, the function's demand, and the shedder's ticket with
// the outcome o means to it.
func (l *lease) settle(now time.Time, o router.Outcome) {
	l.releaseRest(now)
	switch o {
	case router.Success:
		l.done(now, loadshed.Success)
	case router.Canceled:
		l.done(now, loadshed.Ignored)
	default:
		l.done(now, loadshed.Failure)
	}
}

// releaseRest releases everything but the slot and the ticket: the
// function-wide limit and the function's demand.
func (l *lease) releaseRest(now time.Time) {
	if l.limited {
		l.limited = false
		l.fn.limit.Release()
	}
	l.fn.demand.Add(-1)
	l.fn.touch(now)
}

// wantCapacity makes sure enough cold starts are under way for the
// requests waiting: ceil(waiting / per-instance limit) beyond the free
// slots, within MaxInstances. It returns at once; the cold starts run in the
// background and their instances serve the queue as soon as they are Ready.
func (d *Dataplane) wantCapacity(fn *function, v *version, waiting int) {
	if !d.running() {
		return // nothing can start instances
	}
	per := max(v.spec.Concurrency, 1)
	want := (waiting + per - 1) / per
	routable, _ := d.router.Capacity(fn.id)
	want = min(want, v.spec.MaxInstances-routable)
	if want <= 0 || d.starter.InFlight(v.cs) >= want {
		return
	}
	d.ensure(fn, v, want)
}

// ensure asks the Starter for n cold starts of v in flight, in the
// background.
func (d *Dataplane) ensure(fn *function, v *version, n int) {
	if fn.backingOff(time.Now()) {
		return // recent cold starts failed; the scaler retries after the backoff
	}
	d.spawn(func() {
		if _, err := d.starter.Ensure(d.ctx, v.cs, n); err != nil && d.ctx.Err() == nil {
			d.log.Warn("cold start failed", "function", fn.id, "err", err)
		}
	})
}

// retryAfterError carries the shedder's retry hint with the wire error.
type retryAfterError struct {
	err   *lifecycle.Error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter returns how long a caller should wait before retrying a
// request that Invoke refused because the dataplane is overloaded.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra.after, true
	}
	return 0, false
}

func shedError(err error) error {
	after, _ := loadshed.RetryAfter(err)
	after = max(after, time.Second)
	return &retryAfterError{
		err:   lifecycle.Errorf(lifecycle.CodeShed, "dataplane overloaded, retry after %v", after),
		after: after,
	}
}

func errFunctionLimit(id string, limit int) error {
	return lifecycle.Errorf(lifecycle.CodeConcurrencyLimit, "function %s is at its concurrency limit of %d", id, limit)
}
