// Package loadshed decides which requests an overloaded server refuses, so
// that the ones it admits still finish in time. An unprotected server under
// more load than it can serve queues without bound: latency grows until
// clients give up, and the server keeps working on requests nobody waits
// for, so goodput collapses. Refusing the excess early, cheaply and
// predictably keeps goodput at capacity and latency near its unloaded
// value.
//
// A [Shedder] works at two levels. At the server level a detector turns
// shedding on and off from signals aggregated over a control interval (100
// ms, CoDel's): the average number in flight against the concurrency
// limit, the queueing delay of admitted requests (CoDel's rule: even the
// shortest wait of an interval above 5 ms), and any pluggable [Signal]
// (CPU, memory). It turns on as soon as an interval is overloaded and off
// only after a cool-off (1 s) with every signal clear, with a low-water
// mark on the in-flight signal, so under steady load it flips at most once
// per cool-off. At the client level, while shedding is on, it picks the
// victims: Sheddable requests first; then callers above their max-min fair
// share of the limit, estimated from per-caller accounting over a sliding
// window (10 s); Critical requests last. Callers within their share may
// use room above the limit (Burst, 1× the limit by default) so that their
// random swings do not get them shed while a greedy caller is held to its
// share.
//
// The concurrency limit is either the server's known Capacity or an
// adaptive limit, so users need not know the capacity up front: a
// gradient limiter in the style of Netflix's concurrency-limits and
// Envoy's adaptive concurrency filter sets it from the ratio of the
// no-load latency to the sampled latency, with a tolerance of 50 % and a
// queue allowance of √limit. The no-load latency is re-measured from the
// traffic itself (latencies less the queueing delays that
// [Ticket.Started] reports), never by cutting the limit to a few requests,
// so re-measuring causes no burst of rejections. Admit is lock-free and
// allocation-free; the control step runs at most once per interval, inside
// whichever call first sees the interval end. The package reads no clock
// and starts no goroutine: callers pass now, so a simulator runs the same
// code on virtual time. It imports nothing of the project; the gateway
// maps [ErrShed] to 503 with a Retry-After header.
package loadshed
