// Package natstest runs a real NATS server with JetStream for a test, on
// 127.0.0.1 and with its store in a directory of the test's, in one of two
// ways.
//
// [Start] runs the server inside the test process
// (github.com/nats-io/nats-server/v2/server) on a free port: it is ready in
// tens of milliseconds, and [Server.Restart] shuts it down and starts it
// again on the same port and store, so clients reconnect and find their
// streams. [StartProcess] runs the nats-server binary as a child process,
// in a process group of its own that the kernel kills if the test binary
// dies: [Process.Kill] sends it SIGKILL, as a crash would, and
// [Process.Start] starts it again on the same port and store, which is how
// a test proves that JetStream's state on disk survives the server, not
// only its memory.
//
// The binary comes from the environment (FAAS_NATS_SERVER) or from a cache
// keyed by version, $FAAS_TOOLS_CACHE or $HOME/.cache/faasplane/tools. If
// it is missing, StartProcess runs ../tools/ensure-tools.sh itself, which
// installs nats-server v2.15.3 from the Go module proxy (26 s on two cores
// with a cold build cache, 1 s with a warm one), once per machine. With the
// binary in place a server process accepts JetStream requests 40-60 ms
// after its start.
package natstest
