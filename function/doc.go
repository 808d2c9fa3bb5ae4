// Package function is the SDK for functions written in Go: a function is an
// http.Handler plus, optionally, an init func, and [Serve] turns them into
// the process that a faasplane runtime agent starts.
//
// The agent starts the function's process with PORT in its environment and
// waits until 127.0.0.1:$PORT accepts connections. It then calls the init
// hook, POST /_faas/init ([InitPath]), once per instance: the SDK runs the
// init func and answers 200 on success, or 500 with the error's text as the
// body, in which case the agent reports init_failed and may call the hook
// again in the same process. After a success the hook answers 200 at once
// and never runs the init func again. Until then every other request gets
// 503, so a function never serves with half-initialized state even when
// called directly, bypassing the agent. A function without an init func
// answers the hook with 200 and serves at once.
//
// Put expensive one-time work (opening connection pools, loading models,
// warming caches) in the init func rather than in main: the agent starts
// processes before a request needs them and measures the init separately,
// and a failed init is retried without paying for a new process. Serve
// shuts down gracefully on SIGTERM or SIGINT, which is how the agent stops
// a function before it kills its process group. A function that speaks gRPC
// uses [WithH2C] and the package manifest's "protocol": "h2c" (or
// [WithH2COnly], which the agent detects without the manifest's help).
//
// The function's output on stdout and stderr becomes the agent's log
// records, one per line, tagged with the function's ID and instance.
// [Logger] writes JSON lines that the agent parses into structured records
// carrying the invocation's request ID, level and attributes.
package function
