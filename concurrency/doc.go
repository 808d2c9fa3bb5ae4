// Package concurrency counts and bounds the requests a function's instances
// hold, queues the requests that find no free instance, and turns the
// measured concurrency into a scaling decision.
//
// [Slots] is the per-instance counter on the hot path: the limit and the
// in-flight count share one atomic word, so TryAcquire is one
// compare-and-swap that never admits beyond the limit in force, even while
// the limit changes, and allocates nothing. An instance is either Shared
// (up to its limit of requests at once) or Exclusive (dedicated to one
// request). [FunctionLimit] bounds a function's requests across all its
// instances, to protect the databases and services it calls, and refuses
// the excess with [ErrFunctionLimit] rather than queueing it. [Queue] is the
// bounded FIFO in which a request waits for a slot on the cold-start path:
// it has its own queue-time deadline (default 30 s) separate from the
// request's, refuses at once when full (default 1000 waiters), and hands a
// freed slot directly to the longest waiter; a waiter that gives up never
// takes a slot with it.
//
// Scaling follows Knative's pod autoscaler (KPA), whose defaults are
// proven in production: a [Meter] keeps the time-weighted average
// concurrency over a 60 s stable window and a 6 s panic window in 1 s
// buckets, and the default [ScalingPolicy], [KPA], asks for
// ceil(average / (per-instance limit × 0.7)) instances. The 70 % target
// leaves headroom for bursts while instances start. When the panic window
// asks for twice the current instances the policy panics: it follows the
// panic window and never scales down until a whole stable window passes
// below the threshold. One decision may multiply the instances by up to
// 1000 or halve them. A function scales to zero only after a keep-alive of
// 10 minutes (the idle time OpenWhisk keeps containers for) with nothing in
// flight or queued. Policies read no clock and start no goroutine: they
// take now and observations as arguments, so a simulator runs the very
// same code on virtual time. This package imports nothing of the project;
// the Dataplane maps its errors to wire codes.
package concurrency
