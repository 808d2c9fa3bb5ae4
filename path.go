package faas

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// call is one invocation on its way through the Dataplane, from admission
// to its end: what ServeHTTP, Invoke and a request forwarded by another
// node all drive, in this order:
//
//	c := d.newCall(fn, caller, priority, start)
//	err := c.admit(ctx)            // shedder, function-wide limit, a slot (waiting for one)
//	res, err := send(ctx, c, ...)  // one attempt, and the one retry of a request that never reached a function
//	c.finish(err)                  // statistics and the observer; send released what c held
//
// The gateway splits admit in two (admitShed, then acquire) to read the
// body in between. Whatever admission took, c gives back once: end after a
// request that got a slot, abandon after one that did not.
type call struct {
	d      *Dataplane
	fn     *function
	v      *version
	caller string
	prio   loadshed.Priority
	start  time.Time

	// What the call holds.
	ticket  loadshed.Ticket // valid while shed is set
	shed    bool            // the shedder's ticket must be Done
	started bool            // the ticket was told the request stopped waiting
	limited bool            // a slot of the function-wide limit is held
	demand  bool            // counted in fn.demand
	route   router.Route    // the slot on an instance; zero when none

	waited bool // the call waited for capacity

	// What the statistics, usage records and traces read at the end.
	rid      string              // the request ID
	queuedAt time.Time           // when the call began to wait for capacity (zero: never)
	gotSlot  time.Time           // when the last wait ended with a slot
	sent     time.Time           // when the first attempt went to an instance
	ended    time.Time           // when the last attempt's answer ended
	inst     *lifecycle.Instance // the instance of the last attempt
	billed   time.Duration       // the agents' billed durations (X-Faas-Billed-Ms), summed over attempts
	metered  bool                // an agent reported a billed duration
}

// newCall returns the call of a request for fn that arrived at start. It
// is a value, so that the hot path does not allocate.
func (d *Dataplane) newCall(fn *function, caller string, prio loadshed.Priority, start time.Time) call {
	return call{d: d, fn: fn, v: fn.version(), caller: caller, prio: prio, start: start}
}

// admit runs the whole admission: the shedder, then a slot.
func (c *call) admit(ctx context.Context) error {
	if err := c.admitShed(); err != nil {
		return err
	}
	return c.acquire(ctx)
}

// admitShed asks the load shedder, which costs a few atomic operations: the
// gateway asks before it reads a body.
func (c *call) admitShed() error {
	if c.d.shed == nil {
		return nil
	}
	t, err := c.d.shed.Admit(c.start, c.caller, c.prio)
	if err != nil {
		return shedError(err)
	}
	c.ticket, c.shed = t, true
	return nil
}

// acquire takes the function-wide limit and a slot on an instance, waiting
// in the function's queue (bounded by the spec's QueueTimeout) while cold
// starts bring capacity. It does not allocate when a slot is free. On error
// the call has given back what it held.
func (c *call) acquire(ctx context.Context) error {
	fn, now := c.fn, c.start
	if c.v.spec.MaxConcurrency > 0 {
		if err := fn.limit.Acquire(); err != nil {
			c.abandon(now, loadshed.Ignored)
			return errFunctionLimit(fn.id, fn.limit.Limit())
		}
		c.limited = true
	}
	fn.demand.Add(1)
	c.demand = true
	rt, err := c.d.router.Pick(fn.id)
	if err == nil {
		c.route = rt
		c.startTicket(now)
		return nil
	}
	if errors.Is(err, router.ErrNoRoute) {
		// Waiting for a cold start is not queueing behind an overloaded
		// dataplane: the shedder must not read it as queueing delay.
		c.startTicket(now)
	}
	return c.wait(ctx)
}

// startTicket tells the shedder's ticket that the request stopped waiting.
func (c *call) startTicket(now time.Time) {
	if c.shed && !c.started {
		c.ticket.Started(now)
		c.started = true
	}
}

// wait is the slow path: no instance has a free slot. It makes sure enough
// cold starts are under way and waits in the function's queue for the first
// slot released or created.
func (c *call) wait(ctx context.Context) error {
	fn, v, d := c.fn, c.v, c.d
	c.waited = true
	c.queuedAt = cmp.Or(c.queuedAt, d.clock.Now())
	d.wantCapacity(fn, v, fn.queue.Len()+1)
	qctx, cancel := context.WithTimeout(ctx, v.spec.QueueTimeout)
	rt, err := fn.queue.Acquire(qctx)
	cancel()
	end := d.clock.Now()
	if err == nil {
		c.route, c.gotSlot = rt, end
		c.startTicket(end)
		return nil
	}
	switch {
	case errors.Is(err, concurrency.ErrQueueFull):
		c.abandon(end, loadshed.Dropped)
		return lifecycle.Errorf(lifecycle.CodeConcurrencyLimit, "function %s: %d requests already wait for capacity", fn.id, fn.queue.Cap())
	case errors.Is(err, concurrency.ErrClosed) && d.state.Load() >= stateStopping:
		c.abandon(end, loadshed.Ignored)
		return lifecycle.Errorf(lifecycle.CodeNotReady, "the dataplane is shutting down")
	case errors.Is(err, concurrency.ErrClosed):
		c.abandon(end, loadshed.Ignored)
		return lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %s was removed", fn.id)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.abandon(end, loadshed.Ignored)
		return fmt.Errorf("faas: waiting for capacity: %w", ctx.Err())
	default:
		// The queue time or the request's deadline ran out: the function
		// could not get capacity in time, which is a sign of overload.
		c.abandon(end, loadshed.Dropped)
		return lifecycle.Errorf(lifecycle.CodeTimeout, "function %s: no capacity within %v (cold start or queue)", fn.id, min(v.spec.QueueTimeout, end.Sub(c.start)).Round(time.Millisecond))
	}
}

// send runs try on the call's route, and once more on another instance when
// the failure is safe to retry (router.Retryable) and within the retry
// budget. A request that never reached a function and finds no other
// instance (the only one died or was reassigned) waits for capacity as a
// new request would, within its queue time, rather than failing. send ends
// the call: whatever admission took is given back when it returns.
func send[T any](ctx context.Context, c *call, idempotent bool, try func(router.Route) (T, router.Outcome, error)) (T, error) {
	c.sent, c.inst = c.d.clock.Now(), c.route.Instance()
	res, o, err := try(c.route)
	if err == nil || !router.Retryable(o, idempotent) {
		c.end(c.d.clock.Now(), o)
		return res, err
	}
	failed := c.route
	c.route = router.Route{}
	failed.Release(c.d.clock.Now(), o)
	next, rerr := c.d.router.Retry(failed, o, idempotent)
	if rerr != nil && !o.Reached() && (errors.Is(rerr, router.ErrNoRoute) || errors.Is(rerr, router.ErrNoCapacity)) {
		if werr := c.wait(ctx); werr != nil {
			var zero T
			return zero, werr // wait gave back what the call held
		}
		next, rerr = c.route, nil
	}
	if rerr != nil {
		c.end(c.d.clock.Now(), o) // no retry; the slot is already released
		return res, err
	}
	c.route, c.inst = next, next.Instance()
	res, o, err = try(next)
	c.end(c.d.clock.Now(), o)
	return res, err
}

// end gives back what the call holds after a request that ended with o:
// the slot (the router feeds o to the instance's breaker and offers the
// slot to the function's longest waiter), the function-wide limit, the
// function's demand, and the shedder's ticket with what o means to it.
func (c *call) end(now time.Time, o router.Outcome) {
	c.ended = now
	if !c.route.IsZero() {
		c.route.Release(now, o)
		c.route = router.Route{}
	}
	switch o {
	case router.Success:
		c.abandon(now, loadshed.Success)
	case router.Canceled:
		c.abandon(now, loadshed.Ignored)
	default:
		c.abandon(now, loadshed.Failure)
	}
}

// abandon gives back what the call holds but a slot: for a request that
// got none, or whose slot was released already.
func (c *call) abandon(now time.Time, o loadshed.Outcome) {
	if c.limited {
		c.limited = false
		c.fn.limit.Release()
	}
	if c.demand {
		c.demand = false
		c.fn.demand.Add(-1)
		c.fn.touch(now)
	}
	if c.shed {
		c.shed = false
		c.ticket.Done(now, o)
	}
}

// finish records the call's end: the statistics of its function and the
// observer. err is nil when the function answered, whatever its status.
func (c *call) finish(err error) {
	c.d.recordCall(c, err)
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
	if fn.backingOff(d.clock.Now()) {
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
	err    *lifecycle.Error
	after  time.Duration
	reason loadshed.Reason // why the shedder refused it, for the statistics
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
	ra := &retryAfterError{
		err:   lifecycle.Errorf(lifecycle.CodeShed, "dataplane overloaded, retry after %v", after),
		after: after,
	}
	if se := (*loadshed.ShedError)(nil); errors.As(err, &se) {
		ra.reason = se.Reason
	}
	return ra
}

func errFunctionLimit(id string, limit int) error {
	return lifecycle.Errorf(lifecycle.CodeConcurrencyLimit, "function %s is at its concurrency limit of %d", id, limit)
}
