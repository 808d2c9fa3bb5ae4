package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

const helloManifest = `{"command": "./hello"}`

func TestLoadInitializeInvokePing(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()

	_, err := h.client.Ping(ctx, h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeNoFunction, "a generic pod")
	requireError(t, h.mustInvoke("hello", "/"), lifecycle.CodeInstanceReassigned)

	ref := h.publish("hello.tar.gz", binPackage(t, "hello", helloManifest))
	lr, err := h.load("hello", ref, nil)
	require.NoError(t, err)
	require.Equal(t, "hello", lr.FunctionID)
	require.Positive(t, lr.PID)
	require.Equal(t, lifecycle.ProtocolHTTP1, lr.Protocol)
	require.False(t, lr.CacheHit)
	require.Positive(t, lr.Timings.StartMillis)
	t.Logf("load timings: %+v", lr.Timings)

	ping, err := h.client.Ping(ctx, h.ctl)
	require.NoError(t, err)
	require.Equal(t, lifecycle.PingResponse{FunctionID: "hello", State: "loaded", PID: lr.PID, Node: "node-1"}, ping)
	requireError(t, h.mustInvoke("hello", "/"), lifecycle.CodeNotReady)

	ir, err := h.client.Initialize(ctx, h.ctl, lifecycle.InitializeRequest{FunctionID: "hello"})
	require.NoError(t, err)
	require.Equal(t, 1, ir.Attempts)
	require.False(t, ir.AlreadyInitialized)
	ping, err = h.client.Ping(ctx, h.ctl)
	require.NoError(t, err)
	require.Equal(t, "ready", ping.State)

	r := h.mustInvoke("hello", "/greet?name=faas")
	require.Equal(t, 200, r.status)
	require.Equal(t, "hello, faas\n", r.body)
	require.Equal(t, "HTTP/1.1", r.header.Get("X-Hello-Proto"))

	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB streamed both ways
	r, err = h.invoke(ctx, "hello", "POST", "/echo", big)
	require.NoError(t, err)
	require.Equal(t, 200, r.status)
	require.Equal(t, big, r.body)

	st, err := h.client.Stats(ctx, h.ctl)
	require.NoError(t, err)
	require.Equal(t, "hello", st.FunctionID)
	require.Equal(t, int64(2), st.Completed)
	require.Equal(t, int64(0), st.Failed)
	require.Equal(t, int64(2), st.Rejected) // reassigned while generic, not ready
	require.Equal(t, 4, st.Limit)
	require.Equal(t, 0, st.InFlight)
	require.Equal(t, int64(2), st.Latency.Count)

	ir, err = h.client.Initialize(ctx, h.ctl, lifecycle.InitializeRequest{FunctionID: "hello"})
	require.NoError(t, err)
	require.True(t, ir.AlreadyInitialized)
	require.Equal(t, 1, ir.Attempts)

	_, err = h.load("other", ref, nil)
	require.ErrorIs(t, err, lifecycle.CodeAlreadyLoaded)

	// The function's own output became log records tagged with its ID.
	require.NotEmpty(t, h.logs.find("function output", "function_id=hello", "stream=stderr", "function serving"))

	dir := h.agent.Status().Dir
	require.DirExists(t, dir)
	require.NoError(t, h.agent.Close())
	requireReaped(t, lr.PID)
	require.NoDirExists(t, dir)
}

func TestInitFailureThenRetrySucceedsInSameProcess(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	ref := h.publish("flaky.tar.gz", binPackage(t, "flaky-init", `{"command": "./flaky-init"}`))
	lr, err := h.load("flaky", ref, func(r *lifecycle.LoadRequest) { r.Env = map[string]string{"FAIL_INIT_TIMES": "2"} })
	require.NoError(t, err)

	for attempt := 1; attempt <= 2; attempt++ {
		_, err := h.client.Initialize(ctx, h.ctl, lifecycle.InitializeRequest{FunctionID: "flaky"})
		require.ErrorIs(t, err, lifecycle.CodeInitFailed)
		require.ErrorContains(t, err, fmt.Sprintf("init attempt %d of 3 fails on purpose", attempt))
		requireError(t, h.mustInvoke("flaky", "/"), lifecycle.CodeNotReady)
		ping, err := h.client.Ping(ctx, h.ctl)
		require.NoError(t, err)
		require.Equal(t, "loaded", ping.State)
		require.Equal(t, lr.PID, ping.PID, "the process is kept")
	}
	ir, err := h.client.Initialize(ctx, h.ctl, lifecycle.InitializeRequest{FunctionID: "flaky"})
	require.NoError(t, err)
	require.Equal(t, 3, ir.Attempts)

	r := h.mustInvoke("flaky", "/")
	require.Equal(t, fmt.Sprintf("ready after 3 init attempts (pid %d)\n", lr.PID), r.body)
	require.Len(t, h.logs.find("init failed", "function_id=flaky"), 2)
}

func TestFunctionCrashIsNoticed(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("hello", "hello", helloManifest, nil)
	require.Equal(t, 200, h.mustInvoke("hello", "/").status)

	require.NoError(t, syscall.Kill(lr.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		_, err := h.client.Ping(context.Background(), h.ctl)
		return err != nil
	}, 10*time.Second, time.Millisecond)
	_, err := h.client.Ping(context.Background(), h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeFunctionExited)
	requireError(t, h.mustInvoke("hello", "/"), lifecycle.CodeFunctionExited)
	_, err = h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "hello"})
	require.NoError(t, err, "initialize after success stays a no-op")
	requireReaped(t, lr.PID)
	require.NotEmpty(t, h.logs.find("function process exited", "function_id=hello", "signal: killed"))
}

func TestWrongFunctionIDIsReassigned(t *testing.T) {
	h := newHarness(t, nil)
	h.loadReady("fn-a", "hello", helloManifest, nil)

	requireError(t, h.mustInvoke("fn-b", "/"), lifecycle.CodeInstanceReassigned)
	r := h.mustInvoke("", "/")
	requireError(t, r, lifecycle.CodeBadRequest)
	require.Contains(t, r.header.Get(lifecycle.HeaderErrorMessage), "X-Faas-Function-Id")

	_, err := h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "fn-b"})
	require.ErrorIs(t, err, lifecycle.CodeInstanceReassigned)
	require.Equal(t, 200, h.mustInvoke("fn-a", "/").status)
}

func TestOverTheConcurrencyLimit(t *testing.T) {
	h := newHarness(t, nil)
	h.loadReady("sleepy", "sleep", `{"command": "./sleep"}`, func(r *lifecycle.LoadRequest) { r.Limits.Concurrency = 1 })

	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, err := h.invoke(ctx, "sleepy", "GET", "/?ms=600000", "")
		held <- err
	}()
	require.Eventually(t, func() bool {
		st, err := h.client.Stats(context.Background(), h.ctl)
		return err == nil && st.InFlight == 1
	}, 10*time.Second, time.Millisecond)

	requireError(t, h.mustInvoke("sleepy", "/?ms=0"), lifecycle.CodeConcurrencyLimit)
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Rejected)
	require.Equal(t, 1, st.Limit)

	cancel()
	require.Error(t, <-held)
	require.Eventually(t, func() bool {
		st, err := h.client.Stats(context.Background(), h.ctl)
		return err == nil && st.InFlight == 0
	}, 10*time.Second, time.Millisecond)
	r := h.mustInvoke("sleepy", "/?ms=0")
	require.Equal(t, 200, r.status)
	require.Equal(t, "slept 0 ms\n", r.body)
}

func TestInvocationTimeout(t *testing.T) {
	h := newHarness(t, nil)
	h.loadReady("sleepy", "sleep", `{"command": "./sleep"}`, func(r *lifecycle.LoadRequest) { r.Limits.TimeoutMillis = 20 })
	requireError(t, h.mustInvoke("sleepy", "/?ms=600000"), lifecycle.CodeTimeout)
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Failed)
}

// TestAbortedInvocationIsCounted: a caller that leaves while the function
// streams its answer makes the proxy abort the handler; the invocation
// still counts as completed, and as failed.
func TestAbortedInvocationIsCounted(t *testing.T) {
	h := newHarness(t, nil)
	h.loadReady("hello", "hello", helloManifest, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+h.addr+"/echo", pr)
	require.NoError(t, err)
	req.Header.Set(lifecycle.HeaderFunctionID, "hello")
	// More than the buffers on the way hold, so that the echo streams
	// back while the body is still being sent.
	chunk := strings.Repeat("x", 256<<10)
	go func() { _, _ = io.WriteString(pw, chunk) }()
	resp, err := h.http.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	got := make([]byte, 64<<10)
	_, err = io.ReadFull(resp.Body, got)
	require.NoError(t, err)
	require.Equal(t, chunk[:len(got)], string(got))

	cancel() // the caller leaves mid-body
	_ = resp.Body.Close()
	require.Eventually(t, func() bool {
		st, err := h.client.Stats(context.Background(), h.ctl)
		return err == nil && st.Completed == 1 && st.Failed == 1 && st.InFlight == 0
	}, 10*time.Second, time.Millisecond)
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Latency.Count)
	require.Equal(t, 200, h.mustInvoke("hello", "/").status, "the agent serves on")
}

func TestH2CFunction(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("h2", "hello", `{"command": "./hello", "protocol": "h2c", "env": {"HELLO_H2C": "1"}}`, nil)
	require.Equal(t, lifecycle.ProtocolH2C, lr.Protocol)
	r := h.mustInvoke("h2", "/?name=grpc")
	require.Equal(t, 200, r.status)
	require.Equal(t, "hello, grpc\n", r.body)
	require.Equal(t, "HTTP/2.0", r.header.Get("X-Hello-Proto"), "agent → function over h2c")

	// Callers may speak h2c to the agent too (gRPC clients do).
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "http://"+h.addr+"/", strings.NewReader("over h2c"))
	require.NoError(t, err)
	req.Header.Set(lifecycle.HeaderFunctionID, "h2")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "HTTP/2.0", resp.Proto, "caller → agent over h2c")
	require.Equal(t, "over h2c", string(body))
}

func TestCloseKillsTheWholeProcessGroup(t *testing.T) {
	h := newHarness(t, nil)
	// A shell starts a background child in the function's process group,
	// records its PID, and becomes the function.
	lr := h.loadReady("forky", "hello", helloManifest, func(r *lifecycle.LoadRequest) {
		r.Command = "/bin/sh"
		r.Args = []string{"-c", "sleep 600 & echo $! > child.pid; exec ./hello"}
	})
	var child int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(h.agent.Status().Dir, "child.pid"))
		_, serr := fmt.Sscan(string(b), &child)
		return err == nil && serr == nil
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, syscall.Kill(child, 0), "the child runs")

	require.NoError(t, h.agent.Close())
	requireReaped(t, lr.PID)
	requireGone(t, child)
}

func TestServeContextCancelStopsTheFunction(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("hello", "hello", helloManifest, nil)

	// A second Serve of the same agent, whose context we cancel.
	ctx, cancel := context.WithCancel(context.Background())
	lns := mustListen(t)
	done := make(chan error, 1)
	go func() { done <- h.agent.Serve(ctx, lns) }()
	// Once it answers, cancel its context: the agent closes.
	require.Eventually(t, func() bool {
		_, err := h.client.Ping(context.Background(), lifecycle.Control{Addr: lns.Control.Addr().String(), Token: h.ctl.Token})
		return err == nil
	}, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	requireReaped(t, lr.PID)
	require.ErrorIs(t, h.agent.Serve(context.Background(), mustListen(t)), ErrClosed)
}

func TestUnloadMakesTheAgentGenericAgain(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("hello", "hello", helloManifest, nil)
	dir := h.agent.Status().Dir
	h.agent.Unload()
	requireReaped(t, lr.PID)
	require.NoDirExists(t, dir)
	_, err := h.client.Ping(context.Background(), h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeNoFunction)
	requireError(t, h.mustInvoke("hello", "/"), lifecycle.CodeInstanceReassigned)
	h.agent.Unload() // no-op on a generic pod

	// A function without an init hook: initialize only flips it to ready.
	lr2 := h.loadReady("noinit", "hello", `{"command": "./hello", "no_init": true}`, nil)
	require.NotEqual(t, lr.PID, lr2.PID)
	ir, err := h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "noinit"})
	require.NoError(t, err)
	require.True(t, ir.AlreadyInitialized)
	require.Zero(t, ir.Attempts)
	require.Equal(t, 200, h.mustInvoke("noinit", "/").status)
}
