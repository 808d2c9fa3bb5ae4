package agent

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/runtimes"
	"github.com/stretchr/testify/require"
)

// The shipped runtimes and their conformance fixtures, which serve the
// routes the agent's tests use (/hello, /wait, /crash, /alloc, /print...).
var fixtures = map[string]string{
	"python": "../runtimes/python/testdata/fixture",
	"node":   "../runtimes/node/testdata/fixture",
}

// withRuntime configures the harness's agent for the shipped runtime name
// (hot load unless exec). A missing interpreter fails the test: Python and
// Node.js are requirements of the test suite.
func withRuntime(t testing.TB, name string, exec bool) func(*Config) {
	t.Helper()
	rt, ok := runtimes.Builtin(name)
	require.True(t, ok)
	cmd, err := rt.Install(context.Background(), filepath.Join(t.TempDir(), "runtime"))
	require.NoError(t, err, "the %s runtime's interpreter is a requirement of the tests", name)
	return func(c *Config) {
		c.Runtime = name
		c.Bootstrap = &Bootstrap{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Exec: exec}
	}
}

// fixtureRef publishes the runtime's fixture package.
func (h *harness) fixtureRef(runtime string) lifecycle.CodeRef {
	h.t.Helper()
	pkg, err := code.PackDir(fixtures[runtime])
	require.NoError(h.t, err)
	return h.publish(runtime+"-fixture.tar.gz", pkg)
}

func (h *harness) loadFixture(runtime, id string, edit func(*lifecycle.LoadRequest)) (lifecycle.LoadResponse, error) {
	return h.load(id, h.fixtureRef(runtime), func(r *lifecycle.LoadRequest) {
		r.Runtime = runtime
		if edit != nil {
			edit(r)
		}
	})
}

func (h *harness) initialize(id string) error {
	_, err := h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: id})
	return err
}

func eachRuntime(t *testing.T, f func(t *testing.T, runtime string)) {
	for _, rt := range []string{"python", "node"} {
		t.Run(rt, func(t *testing.T) { f(t, rt) })
	}
}

// TestHotLoad: the bootstrap runs before any function is known, and the
// load puts the function into that very process; output lines carry the
// function, the pod and the request ID.
func TestHotLoad(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		h := newHarness(t, func(c *Config) { withRuntime(t, rt, false)(c); c.Instance = "pod-7" })
		ctx := context.Background()
		boot := h.agent.Status().BootstrapPID
		require.Positive(t, boot, "the bootstrap starts with the agent")
		_, err := h.client.Ping(ctx, h.ctl)
		require.ErrorIs(t, err, lifecycle.CodeNoFunction, "a generic pod")

		lr, err := h.loadFixture(rt, "fn-"+rt, nil)
		require.NoError(t, err)
		require.True(t, lr.HotLoad)
		require.Equal(t, boot, lr.PID, "no new process: the function is loaded into the bootstrap")
		require.Equal(t, lifecycle.ProtocolHTTP1, lr.Protocol)
		require.Equal(t, lifecycle.ProtocolFromRuntime, lr.ProtocolSource)
		st := h.agent.Status()
		require.Zero(t, st.BootstrapPID)
		require.True(t, st.HotLoad)

		requireError(t, h.mustInvoke("fn-"+rt, "/hello"), lifecycle.CodeNotReady)
		require.NoError(t, h.initialize("fn-"+rt))
		r := h.mustInvoke("fn-"+rt, "/hello?name=hot")
		require.Equal(t, 200, r.status)
		require.Equal(t, "hello, hot\n", r.body)
		r = h.mustInvoke("fn-"+rt, "/env?name=FAAS_INSTANCE")
		require.Equal(t, "pod-7", r.body)

		require.Equal(t, 200, h.mustInvoke("fn-"+rt, "/log").status)
		require.Eventually(t, func() bool {
			return len(h.logs.find("function output", "function_id=fn-"+rt, "instance=pod-7", "request_id=req-42", "line=fixture log", "k=v")) == 1
		}, 10*time.Second, time.Millisecond)

		stats, err := h.client.Stats(ctx, h.ctl)
		require.NoError(t, err)
		require.True(t, stats.HotLoad)
		require.Equal(t, lifecycle.AgentReady, stats.State)
		require.Equal(t, "pod-7", stats.Instance)
		require.Equal(t, rt, stats.Runtime)
		require.Equal(t, int64(3), stats.Completed)

		require.NoError(t, h.agent.Close())
		requireReaped(t, lr.PID)
	})
}

// TestExecModeBootstrap: the same runtime without hot load starts a
// bootstrap per load.
func TestExecModeBootstrap(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		h := newHarness(t, withRuntime(t, rt, true))
		require.Zero(t, h.agent.Status().BootstrapPID, "nothing runs before the load")
		lr, err := h.loadFixture(rt, "fn", nil)
		require.NoError(t, err)
		require.False(t, lr.HotLoad)
		require.Positive(t, lr.PID)
		require.NoError(t, h.initialize("fn"))
		require.Equal(t, "hello, world\n", h.mustInvoke("fn", "/hello").body)
	})
}

// TestFailedHotLoadBreaksThePod: the bootstrap may be half-loaded, so it is
// stopped and the pod refuses any further use, saying why; with exec, a
// failed load leaves the pod generic and usable, as for Go functions.
func TestFailedHotLoadBreaksThePod(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		ctx := context.Background()
		h := newHarness(t, withRuntime(t, rt, false))
		boot := h.agent.Status().BootstrapPID
		entry := map[string]string{"python": "app.py:nope", "node": "index.js:nope"}[rt]
		_, err := h.loadFixture(rt, "broken", func(r *lifecycle.LoadRequest) { r.Command = entry })
		require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
		require.ErrorContains(t, err, "nope")
		requireReaped(t, boot)

		_, err = h.client.Ping(ctx, h.ctl)
		require.ErrorIs(t, err, lifecycle.CodeFunctionExited)
		require.ErrorContains(t, err, "unusable")
		_, err = h.loadFixture(rt, "fine", nil)
		require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
		require.ErrorContains(t, err, "must be deleted")
		w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentGeneric, time.Second)
		require.NoError(t, err)
		require.Equal(t, lifecycle.AgentFailed, w.State)
		require.Contains(t, w.Exit, "hot load of broken failed")
		require.NotEmpty(t, h.logs.find("the function did not load", "nope"))

		// Unload (for embedders that reuse pods) starts a new bootstrap.
		h.agent.Unload()
		require.NotZero(t, h.agent.Status().BootstrapPID)
		_, err = h.loadFixture(rt, "fine", nil)
		require.NoError(t, err)

		x := newHarness(t, withRuntime(t, rt, true))
		_, err = x.loadFixture(rt, "broken", func(r *lifecycle.LoadRequest) { r.Command = entry })
		require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
		x.requireNothingLeft()
		_, err = x.loadFixture(rt, "fine", nil)
		require.NoError(t, err)
	})
}

// TestBootstrapDeathBeforeLoadBreaksThePod: a watch learns of it at once.
func TestBootstrapDeathBeforeLoadBreaksThePod(t *testing.T) {
	h := newHarness(t, withRuntime(t, "python", false))
	ctx := context.Background()
	w, err := h.client.Watch(ctx, h.ctl, "", time.Second)
	require.NoError(t, err)
	require.Equal(t, lifecycle.AgentGeneric, w.State)
	watched := make(chan lifecycle.WatchResponse, 1)
	go func() {
		w, _ := h.client.Watch(ctx, h.ctl, lifecycle.AgentGeneric, lifecycle.MaxWatchWait)
		watched <- w
	}()
	require.Eventually(t, func() bool { return h.agent.watching.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, syscall.Kill(h.agent.Status().BootstrapPID, syscall.SIGKILL))
	w = <-watched
	require.Equal(t, lifecycle.AgentFailed, w.State)
	require.Contains(t, w.Exit, "signal: killed")
	_, err = h.client.Ping(ctx, h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeFunctionExited)
	_, err = h.loadFixture("python", "late", nil)
	require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
}

// TestHotLoadedFunctionLifecycle: the end-to-end cases of Go functions —
// init failure and retry in the same process, the concurrency limit, a
// crash — for the hot-loaded runtimes.
func TestHotLoadedFunctionLifecycle(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		ctx := context.Background()
		h := newHarness(t, withRuntime(t, rt, false))
		lr, err := h.loadFixture(rt, "fn", func(r *lifecycle.LoadRequest) {
			r.Env = map[string]string{"FAIL_INIT_TIMES": "2"}
			r.Limits.Concurrency = 1
		})
		require.NoError(t, err)
		for attempt := 1; attempt <= 2; attempt++ {
			err := h.initialize("fn")
			require.ErrorIs(t, err, lifecycle.CodeInitFailed)
			require.ErrorContains(t, err, "fails on purpose")
			ping, err := h.client.Ping(ctx, h.ctl)
			require.NoError(t, err)
			require.Equal(t, lr.PID, ping.PID, "the process is kept")
		}
		require.NoError(t, h.initialize("fn"))
		require.Equal(t, "3", h.mustInvoke("fn", "/init-count").body)

		// Concurrency 1: a held request makes the next one 429.
		key := filepath.Join(h.agent.Status().Dir, "release")
		held := make(chan invokeResult, 1)
		go func() {
			r, _ := h.invoke(ctx, "fn", "GET", "/wait?key="+key, "")
			held <- r
		}()
		require.Eventually(t, func() bool {
			st, err := h.client.Stats(ctx, h.ctl)
			return err == nil && st.InFlight == 1
		}, 10*time.Second, time.Millisecond)
		requireError(t, h.mustInvoke("fn", "/hello"), lifecycle.CodeConcurrencyLimit)
		require.NoError(t, os.WriteFile(key, nil, 0o644))
		require.Equal(t, "released\n", (<-held).body)

		// A crash: the watch says so, invocations get function_exited.
		r := h.mustInvoke("fn", "/crash")
		requireError(t, r, lifecycle.CodeInstanceFailure)
		w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentReady, 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, lifecycle.AgentExited, w.State)
		require.Equal(t, "exit status 3", w.Exit)
		requireError(t, h.mustInvoke("fn", "/hello"), lifecycle.CodeFunctionExited)
		requireReaped(t, lr.PID)
	})
}

// TestRuntimeErrorsAndStreaming: a handler's error carries the error
// headers (not the faasplane marker), and a streamed answer passes the
// agent as it is produced, its billed time following as a trailer.
func TestRuntimeErrorsAndStreaming(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		h := newHarness(t, withRuntime(t, rt, false))
		_, err := h.loadFixture(rt, "fn", nil)
		require.NoError(t, err)
		require.NoError(t, h.initialize("fn"))
		r := h.mustInvoke("fn", "/error")
		require.Equal(t, 500, r.status)
		require.Equal(t, "internal", r.header.Get(lifecycle.HeaderErrorCode))
		require.Contains(t, r.header.Get(lifecycle.HeaderErrorMessage), "boom from fixture")
		require.Equal(t, "req-42", r.header.Get(lifecycle.HeaderRequestID))
		require.Empty(t, r.header.Get(lifecycle.HeaderErrorSource))

		key := filepath.Join(h.agent.Status().Dir, "release-stream")
		resp, body := h.open(t, "fn", "/stream?key="+key)
		line, err := body.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "first\n", line, "the first chunk arrives while the handler waits")
		require.NoError(t, os.WriteFile(key, nil, 0o644))
		rest, err := readAll(body)
		require.NoError(t, err)
		require.Equal(t, "second\n", rest)
		require.NotEmpty(t, resp.Trailer.Get(lifecycle.HeaderBilledMillis))
		require.NoError(t, resp.Body.Close())
	})
}

// TestLogLinesBoundedInSizeAndRate: lines beyond the bucket are dropped
// and counted, long lines cut and counted.
func TestLogLinesBoundedInSizeAndRate(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		withRuntime(t, "python", false)(c)
		c.LogRate, c.LogBurst, c.LogLineBytes = 1e-9, 5, 256
	})
	_, err := h.loadFixture("python", "chatty", nil)
	require.NoError(t, err)
	require.NoError(t, h.initialize("chatty"))
	require.Equal(t, 200, h.mustInvoke("chatty", "/print?n=2&size=1000").status)
	require.Equal(t, 200, h.mustInvoke("chatty", "/print?n=40").status)
	require.Eventually(t, func() bool {
		st := h.agent.Stats()
		return st.LogLines+st.LogLinesDropped == 42
	}, 10*time.Second, time.Millisecond)
	st := h.agent.Stats()
	require.Equal(t, int64(5), st.LogLines, "the burst")
	require.Equal(t, int64(37), st.LogLinesDropped)
	require.Equal(t, int64(2), st.LogLinesTruncated)
	cut := h.logs.find("function output", "truncated=true")
	require.Len(t, cut, 2)
	for _, rec := range cut {
		_, line, _ := strings.Cut(rec, "line=")
		line, _, _ = strings.Cut(line, " truncated")
		require.Len(t, line, 256)
	}
}

// open sends GET path and returns the response with its body unread.
func (h *harness) open(t *testing.T, id, path string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+h.addr+path, nil)
	require.NoError(t, err)
	req.Header.Set(lifecycle.HeaderFunctionID, id)
	resp, err := h.http.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	return resp, bufio.NewReader(resp.Body)
}

func readAll(r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

// TestNoInitHook: a manifest without an init hook ("no_init") serves at
// once, even when the module defines init: nothing would ever call it.
func TestNoInitHook(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt string) {
		dir := filepath.Join(t.TempDir(), "fn")
		require.NoError(t, os.CopyFS(dir, os.DirFS(fixtures[rt])))
		entry := map[string]string{"python": "app.py:handler", "node": "index.js:handler"}[rt]
		require.NoError(t, os.WriteFile(filepath.Join(dir, "faas.json"), []byte(`{"command": "`+entry+`", "no_init": true}`), 0o644))
		pkg, err := code.PackDir(dir)
		require.NoError(t, err)
		h := newHarness(t, withRuntime(t, rt, false))
		_, err = h.load("noinit", h.publish("noinit.tar.gz", pkg), func(r *lifecycle.LoadRequest) { r.Runtime = rt })
		require.NoError(t, err)
		ir, err := h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "noinit"})
		require.NoError(t, err)
		require.Zero(t, ir.Attempts)
		r := h.mustInvoke("noinit", "/init-count")
		require.Equal(t, 200, r.status)
		require.Equal(t, "0", r.body)
	})
}
