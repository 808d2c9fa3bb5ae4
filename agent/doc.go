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
// dies. Its stdout and stderr become slog records, one per line, tagged
// with the function's ID. A crash is noticed at once (a goroutine waits for
// the process), logged, and reported to watches; ping answers 503 from
// then on. Defaults come from what a cold start needs: readiness is polled
// by dialing from 200 µs apart (a prebuilt binary listens within
// milliseconds, and every one of them is cold-start latency), a process
// gets 10 s to listen and an init hook 30 s; with Config.TreeDir set, a
// package already unpacked on the node is copied (or, with RunAs,
// hard-linked) from a read-only cache instead of fetched and unpacked
// again.
package agent
