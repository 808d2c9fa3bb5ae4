package concurrency

import "errors"

// Errors callers act on; test for them with errors.Is. The Dataplane maps
// them to its wire codes (a full function limit or wait queue is a 429, a
// queue-time deadline a 504).
var (
	// ErrFunctionLimit reports that a function already has as many
	// requests in flight, over all its instances, as its function-wide
	// limit allows.
	ErrFunctionLimit = errors.New("concurrency: function concurrency limit reached")
	// ErrQueueFull reports that a wait queue already holds its maximum
	// number of waiters; the request is refused at once rather than queued
	// without bound.
	ErrQueueFull = errors.New("concurrency: wait queue full")
	// ErrQueueTimeout reports that a waiter spent the queue's maximum wait
	// without getting a slot. It is distinct from the request's own
	// context deadline, which is reported as the context's error.
	ErrQueueTimeout = errors.New("concurrency: queue wait deadline exceeded")
	// ErrClosed reports a wait on a queue that was closed.
	ErrClosed = errors.New("concurrency: queue closed")
	// ErrInvalidConfig is wrapped by every configuration error.
	ErrInvalidConfig = errors.New("concurrency: invalid configuration")
)
