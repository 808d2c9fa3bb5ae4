package router

import "errors"

// Errors returned by the [Router]. Test for them with errors.Is; the ones
// returned on the hot path ([ErrNoRoute], [ErrNoCapacity]) are returned as
// they are, so the comparison costs nothing and nothing is allocated.
var (
	// ErrNoRoute reports that the function has no instance that may take
	// a request now: none was added, or every one is unhealthy, ejected
	// or not Ready. The caller starts an instance (a cold start).
	ErrNoRoute = errors.New("router: no routable instance")
	// ErrNoCapacity reports that the function has routable instances but
	// every one of them is at its concurrency limit (or the slots were
	// taken by concurrent requests during the bounded retries). The caller
	// queues the request or starts another instance.
	ErrNoCapacity = errors.New("router: every routable instance is at its concurrency limit")
	// ErrDuplicateInstance reports an Add of an instance ID the router
	// already holds.
	ErrDuplicateInstance = errors.New("router: duplicate instance")
	// ErrUnknownInstance reports an instance the router does not hold.
	ErrUnknownInstance = errors.New("router: unknown instance")
	// ErrInvalidInstance reports an Add of an instance that cannot be
	// routed to: nil, an empty ID or function ID, nil slots, or a state
	// that is not live (Draining, Terminated, Failed).
	ErrInvalidInstance = errors.New("router: invalid instance")
	// ErrInvalidConfig reports a configuration value out of range; the
	// message names the field.
	ErrInvalidConfig = errors.New("router: invalid config")
	// ErrNotRetryable reports a retry that is not safe: the request may
	// have reached the function and is not idempotent, or it was already
	// retried once.
	ErrNotRetryable = errors.New("router: request is not safe to retry")
	// ErrRetryBudget reports a retry refused because the function's retry
	// budget is spent (too many retries in flight for its active
	// requests).
	ErrRetryBudget = errors.New("router: retry budget exhausted")
	// ErrClosed reports a call on a closed [HealthMonitor].
	ErrClosed = errors.New("router: closed")
)
