package agent

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// TestInvocationListenerPassesControlPathsToTheFunction is the regression
// test of the attack through the gateway: every protocol path sent to the
// invocation listener reaches the function verbatim, and none of them can
// load, re-initialize, retire or inspect the instance.
func TestInvocationListenerPassesControlPathsToTheFunction(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("hello", "hello", helloManifest, nil)
	ctx := context.Background()

	for _, c := range []struct{ method, path, body string }{
		{"GET", lifecycle.PathPing, ""},
		{"GET", lifecycle.PathStats, ""},
		{"GET", lifecycle.PathWatch + "?state=ready", ""},
		{"POST", lifecycle.PathInitialize, `{"function_id":"x"}`},
		{"POST", lifecycle.PathLoad, `{"function_id":"x","runtime":"go"}`},
	} {
		r, err := h.invoke(ctx, "hello", c.method, c.path, c.body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.status, "%s %s: %s", c.method, c.path, r.body)
		require.Empty(t, r.header.Get(lifecycle.HeaderErrorCode), "%s %s answered by the agent", c.method, c.path)
		want := "hello, world\n" // hello greets a request without a body
		if c.body != "" {
			want = c.body // and echoes one with a body
		}
		require.Equal(t, want, r.body, "%s %s", c.method, c.path)
	}
	// The instance is untouched: same process, ready, nothing reassigned.
	ping, err := h.client.Ping(ctx, h.ctl)
	require.NoError(t, err)
	require.Equal(t, lifecycle.PingResponse{FunctionID: "hello", State: lifecycle.AgentReady, PID: lr.PID, Node: "node-1"}, ping)
	st, err := h.client.Stats(ctx, h.ctl)
	require.NoError(t, err)
	require.Equal(t, int64(5), st.Completed)
	require.Zero(t, st.Rejected)
}

// TestControlNeedsTheToken: the control listener refuses every request
// without the pod's token with 401 and the error headers, before it looks
// at the method, the path or the body; nothing changes on the pod.
func TestControlNeedsTheToken(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	other := lifecycle.NewControlToken()
	for _, token := range []string{"", other, h.ctl.Token + "x", h.ctl.Token[:len(h.ctl.Token)-1]} {
		for _, c := range []struct{ method, path, body string }{
			{"POST", lifecycle.PathLoad, `{}`},
			{"POST", lifecycle.PathInitialize, `{"function_id":"x"}`},
			{"GET", lifecycle.PathPing, ""},
			{"GET", lifecycle.PathStats, ""},
			{"GET", lifecycle.PathWatch, ""},
			{"DELETE", "/anything", ""},
		} {
			r, err := h.control(ctx, token, c.method, c.path, c.body)
			require.NoError(t, err)
			requireError(t, r, lifecycle.CodeUnauthorized)
			require.Equal(t, `Bearer realm="faas-agent"`, r.header.Get("WWW-Authenticate"))
		}
	}
	_, err := h.client.Ping(ctx, lifecycle.Control{Addr: h.ctl.Addr, Token: other})
	require.ErrorIs(t, err, lifecycle.CodeUnauthorized)

	// With the token: the protocol, and a clear answer for an unknown path.
	_, err = h.client.Ping(ctx, h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeNoFunction)
	r, err := h.control(ctx, h.ctl.Token, "GET", "/v1/nope", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, string(lifecycle.CodeBadRequest), r.header.Get(lifecycle.HeaderErrorCode))
}

// TestWatchReportsChangesAndTheDeathOfTheFunction: a watch answers at once
// when the state differs from the caller's, waits while it does not, and
// ends the moment the function process dies.
func TestWatchReportsChangesAndTheDeathOfTheFunction(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()

	w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentReady, time.Minute)
	require.NoError(t, err, "differs at once: generic")
	require.Equal(t, lifecycle.WatchResponse{State: lifecycle.AgentGeneric}, w)
	w, err = h.client.Watch(ctx, h.ctl, lifecycle.AgentGeneric, time.Millisecond)
	require.NoError(t, err, "the wait ends unchanged")
	require.Equal(t, lifecycle.AgentGeneric, w.State)

	lr := h.loadReady("hello", "hello", helloManifest, nil)
	got := make(chan lifecycle.WatchResponse, 1)
	errc := make(chan error, 1)
	go func() {
		w, err := h.client.Watch(ctx, h.ctl, lifecycle.AgentReady, time.Minute)
		errc <- err
		got <- w
	}()
	// The watch is waiting: the agent is ready and nothing changes. Kill
	// the function process; the watch answers without any poll.
	require.Eventually(t, func() bool { return h.agent.watching.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, syscall.Kill(lr.PID, syscall.SIGKILL))
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not report the death")
	}
	w = <-got
	require.Equal(t, lifecycle.AgentExited, w.State)
	require.Equal(t, "hello", w.FunctionID)
	require.Contains(t, w.Exit, "killed")

	r, err := h.control(ctx, h.ctl.Token, "GET", lifecycle.PathWatch+"?wait=forever", "")
	require.NoError(t, err)
	requireError(t, r, lifecycle.CodeBadRequest)
}

// TestFunctionDeathDuringARequest: a request that was running when the
// process died reached it, so it is instance_failure, not function_exited
// (which promises the request never reached the function).
func TestFunctionDeathDuringARequest(t *testing.T) {
	h := newHarness(t, nil)
	lr := h.loadReady("sleepy", "sleep", `{"command": "./sleep"}`, nil)
	done := make(chan invokeResult, 1)
	go func() {
		r, err := h.invoke(context.Background(), "sleepy", "GET", "/?ms=600000", "")
		require.NoError(t, err)
		done <- r
	}()
	require.Eventually(t, func() bool {
		st, err := h.client.Stats(context.Background(), h.ctl)
		return err == nil && st.InFlight == 1
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, syscall.Kill(lr.PID, syscall.SIGKILL))
	requireError(t, <-done, lifecycle.CodeInstanceFailure)
	require.Eventually(t, func() bool { return h.agent.Status().Exited }, 10*time.Second, time.Millisecond)
	requireError(t, h.mustInvoke("sleepy", "/?ms=0"), lifecycle.CodeFunctionExited)
}
