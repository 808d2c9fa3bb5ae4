// Package agent is the runtime agent that runs inside a pod and turns a
// generic, pre-warmed pod into an instance of one function. It serves two
// listeners. The control listener speaks the protocol of package lifecycle
// to callers that present the pod's control token (anyone else gets 401):
// POST /v1/load fetches the function's code package through a [code.Store],
// verifies its size and sha256 digest, unpacks it safely into the work
// directory, reads its manifest (faas.json) and starts the function process
// with PORT set to a free loopback port, answering once the process accepts
// connections; POST /v1/initialize calls the function's init hook (POST
// /_faas/init by default) once, keeping the process when it fails so that a
// retry is cheap; GET /v1/ping and GET /v1/stats report the instance; GET
// /v1/watch is a long poll that answers when the instance's state changes,
// so that the death of the function process reaches the dataplane at once.
// The invocation listener proxies every request, whatever its path
// (/v1/... included), to the function process with
// net/http/httputil.ReverseProxy: nothing a caller sends there can load,
// re-initialize, retire or inspect the instance.
//
// The agent protects the instance the way the dataplane expects: an
// invocation for another function gets 404 instance_reassigned (an address
// can be reused by another function, and the caller's route is stale), one
// before init succeeded gets 503 not_ready, one beyond the instance's
// concurrency limit gets 429 concurrency_limit (counted with
// concurrency.Slots, a single compare-and-swap), and one after the process
// died gets 503 function_exited, which promises that the request did not
// reach it (a request running when the process died gets 502
// instance_failure). Every error carries the three X-Faas-* headers and the
// X-Faas-Error-Source marker, which the agent strips from function
// responses, so a function can never make its own answer look like the
// agent's. The proxy keeps an idle connection per slot, so a burst at the
// limit reuses connections, and speaks HTTP/2 without TLS to h2c (gRPC)
// functions.
//
// The function process runs in its own process group, optionally as
// another user ([Config.RunAs], for agents running as root): stopping it
// (Close, a failed load, the Serve context ending) sends SIGTERM to the
// group, then SIGKILL after Config.StopGrace, and reaps it, so no child or
// zombie outlives the agent; on Linux the kernel also kills it if the agent
// dies. Its stdout and stderr become log records, one per line (see
// below). A crash is noticed at once (a goroutine waits for the process),
// logged, and reported to watches; ping answers 503 from then on. Defaults come from what a cold start needs: readiness is polled
// by dialing from 200 µs apart (a prebuilt binary listens within
// milliseconds, and every one of them is cold-start latency), a process
// gets 10 s to listen and an init hook 30 s; with Config.TreeDir set, a
// package already unpacked on the node is copied (or, with RunAs,
// hard-linked) from a read-only cache instead of fetched and unpacked
// again.
//
// Language runtimes hot-load (Config.Bootstrap, RUNTIMES.md): the agent of
// a Python or Node.js pod starts the runtime's bootstrap when the pod
// starts, before any function is known, and a load, once the code is
// unpacked, only tells the running bootstrap over a pipe which entry to
// import: no process start, no interpreter start on the cold-start path. A
// failed hot load leaves the pod unusable, and the agent says so (ping
// answers function_exited, a load load_failed, a watch "failed") until it
// is deleted. When neither the manifest nor the load request names the
// protocol, the agent probes the function's port (OPTIONS * for HTTP/1.1,
// then the HTTP/2 preface for h2c) and records what it found.
//
// The agent enforces an instance's memory limit with a cgroup v2 of its
// own when it can create one (the v1 hierarchy with [MemoryCgroup]), else
// with a process limit, and says which (LoadResponse.MemoryLimit); a process the
// kernel killed for its limit is reported as "memory limit exceeded", not
// as a crash. Every invocation that reached the function is billed: its
// duration from the start of the proxying to the end of the response body,
// rounded up to a millisecond, follows the body as the X-Faas-Billed-Ms
// trailer and adds to Stats.BilledMillis. GET /v1/metrics serves the
// statistics in the Prometheus text format. Function output goes to a
// [LogSink] (default: slog), one structured record per line with the
// function, the instance and, for JSON lines from the SDKs, the request
// ID, bounded in size and in rate per instance.
package agent
