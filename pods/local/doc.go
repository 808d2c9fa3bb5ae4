// Package local is the embedded default warmpool.PodProvider: each "pod" is
// a faas-agent process on 127.0.0.1 with a free port, its own work directory,
// and a code-cache directory shared by every pod of the same node.
//
// It lets a dataplane run for real on one machine — the quickstart, the
// end-to-end tests, the benchmarks — with the same agent binary and the same
// HTTP protocol a Kubernetes deployment would use, only without containers.
// Node names are simulated: pods are spread over the configured names, and
// pods of one name share a cache directory, so code locality behaves as it
// would across machines.
//
// The provider runs an agent binary rather than re-executing the host
// program in an "agent mode": the host then needs no cooperation from its
// main function, and this package needs nothing but the standard library, the
// warmpool types and lifecycle. By default it builds the binary once with
// `go build github.com/faasplane/faas/cmd/faas-agent` into a cache directory
// ([BuildAgent]); set Config.AgentPath to use a prebuilt one. Each agent runs
// in its own process group: Delete, Close and context cancellation kill the
// group and reap it, and an agent that dies on its own is noticed at once,
// logged, dropped from List and reported to watchers as deleted.
//
// Each agent learns its pod's ID (-pod) and its runtime (-runtime). A pod of
// runtime "python" or "node" starts the shipped runtime's bootstrap with its
// agent (package runtimes, embedded in the faas-agent binary), so that a
// cold start hot-loads the function into a running interpreter;
// Config.RuntimeArgs passes other agent flags per runtime, e.g. a runtime
// "python-exec" whose pods start the same bootstrap per load.
package local
