package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

var agentPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "local-test-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentPath, err = BuildAgent(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func newProvider(t *testing.T, nodes ...string) *Provider {
	t.Helper()
	p, err := New(context.Background(), Config{AgentPath: agentPath, Nodes: nodes, StopGrace: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// ping sends GET /v1/ping to addr, presenting token when it is not empty.
func ping(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+lifecycle.PathPing, nil)
	require.NoError(t, err)
	if token != "" {
		wire.SetControlToken(req.Header, token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorCode)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func pidOf(t *testing.T, pod warmpool.Pod) int {
	pid, err := strconv.Atoi(pod.Labels[LabelPID])
	require.NoError(t, err)
	return pid
}

func TestCreateListDelete(t *testing.T) {
	p := newProvider(t, "node-a", "node-b")
	ctx := context.Background()
	a, err := p.Create(ctx, warmpool.PodSpec{Name: "pod-a", Runtime: "go", Labels: map[string]string{"team": "x"}})
	require.NoError(t, err)
	b, err := p.Create(ctx, warmpool.PodSpec{Runtime: "go"})
	require.NoError(t, err)

	assert.Equal(t, "pod-a", a.ID)
	assert.NotEqual(t, a.Node, b.Node, "pods spread over nodes")
	assert.Equal(t, "x", a.Labels["team"])
	status, code := ping(t, a.Control.Addr, a.Control.Token)
	assert.Equal(t, http.StatusNotFound, status, "a generic warm pod has no function")
	assert.Equal(t, string(lifecycle.CodeNoFunction), code)
	// Each pod has its own token; the control listener refuses others, and
	// the invocation listener does not speak the protocol at all.
	assert.True(t, lifecycle.ValidControlToken(a.Control.Token))
	assert.NotEqual(t, a.Control.Token, b.Control.Token)
	status, code = ping(t, a.Control.Addr, b.Control.Token)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, string(lifecycle.CodeUnauthorized), code)
	status, _ = ping(t, a.Control.Addr, "")
	assert.Equal(t, http.StatusUnauthorized, status)
	status, code = ping(t, a.Addr, a.Control.Token)
	assert.Equal(t, http.StatusBadRequest, status, "no function ID: not an invocation")
	assert.Equal(t, string(lifecycle.CodeBadRequest), code)
	// The token is not in the agent's arguments nor its environment.
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pidOf(t, a), f))
		require.NoError(t, err)
		assert.NotContains(t, string(b), a.Control.Token, f)
	}

	pods, err := p.List(ctx)
	require.NoError(t, err)
	require.Len(t, pods, 2)
	assert.Equal(t, "local-1", pods[0].ID)
	assert.Equal(t, "pod-a", pods[1].ID)

	_, err = p.Create(ctx, warmpool.PodSpec{Name: "pod-a", Runtime: "go"})
	assert.ErrorIs(t, err, warmpool.ErrPodExists)

	pid := pidOf(t, a)
	require.NoError(t, p.Delete(ctx, "pod-a"))
	assert.False(t, alive(pid), "agent process reaped")
	_, err = os.Stat(a.Labels[LabelWorkDir])
	assert.True(t, os.IsNotExist(err), "work dir removed")
	assert.ErrorIs(t, p.Delete(ctx, "pod-a"), warmpool.ErrPodNotFound)
	pods, _ = p.List(ctx)
	assert.Len(t, pods, 1)
}

func TestCrashIsNoticedAndReported(t *testing.T) {
	p := newProvider(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := p.Watch(ctx)
	require.NoError(t, err)
	pod, err := p.Create(ctx, warmpool.PodSpec{Runtime: "go"})
	require.NoError(t, err)
	ev := <-events
	assert.Equal(t, warmpool.PodAdded, ev.Type)

	require.NoError(t, p.Kill(pod.ID))
	ev = <-events
	assert.Equal(t, warmpool.PodDeleted, ev.Type)
	assert.Equal(t, pod.ID, ev.Pod.ID)
	pods, _ := p.List(ctx)
	assert.Empty(t, pods)
	cancel()
	_, open := <-events
	assert.False(t, open, "watch channel closes with its context")
}

func TestCloseStopsEverything(t *testing.T) {
	p, err := New(context.Background(), Config{AgentPath: agentPath})
	require.NoError(t, err)
	var pids []int
	for range 3 {
		pod, err := p.Create(context.Background(), warmpool.PodSpec{Runtime: "go"})
		require.NoError(t, err)
		pids = append(pids, pidOf(t, pod))
	}
	dir := p.Dir()
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "idempotent")
	for _, pid := range pids {
		assert.False(t, alive(pid))
	}
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "temporary base dir removed")
	_, err = p.Create(context.Background(), warmpool.PodSpec{Runtime: "go"})
	assert.Error(t, err)
}

func TestConfigValidation(t *testing.T) {
	_, err := New(context.Background(), Config{AgentPath: agentPath, Nodes: []string{"a", "a"}})
	assert.Error(t, err)
	_, err = New(context.Background(), Config{AgentPath: agentPath, Nodes: []string{"../x"}})
	assert.Error(t, err)
	_, err = New(context.Background(), Config{AgentPath: filepath.Join(t.TempDir(), "missing")})
	assert.Error(t, err)
	p := newProvider(t)
	_, err = p.Create(context.Background(), warmpool.PodSpec{})
	assert.Error(t, err, "runtime required")
	_, err = p.Create(context.Background(), warmpool.PodSpec{Name: "../escape", Runtime: "go"})
	assert.Error(t, err)
}

func TestCreateHonoursContext(t *testing.T) {
	p := newProvider(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Create(ctx, warmpool.PodSpec{Runtime: "go"})
	require.ErrorIs(t, err, context.Canceled)
	pods, _ := p.List(context.Background())
	assert.Empty(t, pods, "a cancelled create leaves no pod")
}

func TestAgentThatNeverAnnouncesTimesOut(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "silent-agent")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755))
	p, err := New(context.Background(), Config{AgentPath: script, StartTimeout: 200 * time.Millisecond, StopGrace: 100 * time.Millisecond})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Create(context.Background(), warmpool.PodSpec{Runtime: "go"})
	require.ErrorContains(t, err, "did not announce")
}

func ExampleProvider() {
	ctx := context.Background()
	p, err := New(ctx, Config{Nodes: []string{"node-1", "node-2"}}) // builds faas-agent with go build
	if err != nil {
		panic(err)
	}
	defer p.Close()
	pod, err := p.Create(ctx, warmpool.PodSpec{Runtime: "go"})
	if err != nil {
		panic(err)
	}
	fmt.Println(pod.ID, pod.Node)
	// Output: local-1 node-1
}

// TestRuntimePodsRunTheirBootstrap: the agents of runtime "python" start
// the shipped runtime's bootstrap with the pod; RuntimeArgs reach the
// agents of their runtime only; every agent knows its pod's ID.
func TestRuntimePodsRunTheirBootstrap(t *testing.T) {
	p, err := New(context.Background(), Config{AgentPath: agentPath, RuntimeArgs: map[string][]string{
		"python-exec": {"-bootstrap", "builtin:python", "-bootstrap-mode", "exec"},
	}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	ctx := context.Background()
	c := new(lifecycle.Client)
	for _, tc := range []struct {
		runtime  string
		children int // processes of the pod before any load: the bootstrap
	}{{"python", 1}, {"python-exec", 0}, {"go", 0}} {
		pod, err := p.Create(ctx, warmpool.PodSpec{Runtime: tc.runtime})
		require.NoError(t, err)
		st, err := c.Stats(ctx, pod.Control)
		require.NoError(t, err)
		assert.Equal(t, pod.ID, st.Instance, "-pod")
		assert.Equal(t, tc.runtime, st.Runtime)
		// The children of all the agent's threads (any may have forked).
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pidOf(t, pod)))
		require.NoError(t, err)
		var children []string
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			children = append(children, strings.Fields(string(b))...)
		}
		assert.Len(t, children, tc.children, "%s: %v", tc.runtime, children)
	}
}
