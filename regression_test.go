package faas

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/faastest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Regression tests for the findings of the Dataplane's review: each failed
// before its fix.

func TestGatewayPassesEscapedPathsUnchanged(t *testing.T) {
	e := newFakeEnv(t, newFakeAgents(), nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	gw := httptest.NewServer(e.dp)
	defer gw.Close()
	resp, err := http.Get(gw.URL + "/invoke/f/files/my%20doc.txt?q=a%20b")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(b), "uri=/files/my%20doc.txt?q=a%20b")
}

func TestFunctionsOwnErrorHeadersAreNotAgentRefusals(t *testing.T) {
	agents := newFakeAgents()
	var execs atomic.Int64
	agents.handler = func(w http.ResponseWriter, r *http.Request, _ string) {
		execs.Add(1) // the function ran; it passes on a downstream 429
		w.Header().Set(lifecycle.HeaderErrorCode, string(lifecycle.CodeConcurrencyLimit))
		w.WriteHeader(http.StatusTooManyRequests)
	}
	e := newFakeEnv(t, agents, nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 2, Concurrency: 1})
	resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f", Body: []byte("charge $10")})
	require.NoError(t, err, "the function's own response is not an error")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.EqualValues(t, 1, execs.Load(), "a non-idempotent request ran once")
}

func TestForwardingNeverRunsARequestTwice(t *testing.T) {
	var ownerGot atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	owner := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		ownerGot.Add(1) // the owner ran it...
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close() // ...and the connection broke before the answer
	})}
	go func() { _ = owner.Serve(ln) }()
	defer owner.Close()

	agents := newFakeAgents()
	e := newFakeEnv(t, agents, func(c *Config) { c.NodeID = "a" })
	require.NoError(t, e.dp.SetCluster([]ClusterNode{{ID: "a"}, {ID: "b", Addr: ln.Addr().String()}}))
	id := ""
	for i := 0; id == ""; i++ {
		if n, _, _ := e.dp.Owner("f" + strings.Repeat("x", i)); n == "b" {
			id = "f" + strings.Repeat("x", i)
		}
	}
	deployAndWarm(t, e, FunctionSpec{ID: id, MinInstances: 1})
	agents.invokes.Store(0)
	gw := httptest.NewServer(e.dp)
	defer gw.Close()
	resp, err := http.Post(gw.URL+"/invoke/"+id, "text/plain", strings.NewReader("charge $10"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.EqualValues(t, 1, ownerGot.Load())
	assert.EqualValues(t, 0, agents.invokes.Load(), "not run again locally")
}

func TestColdStartFinishingAfterRemoveLeavesNoPod(t *testing.T) {
	agents := newFakeAgents()
	agents.gate = make(chan struct{})
	e := newFakeEnv(t, agents, nil)
	ref := e.store.Add([]byte("v1"))
	ref.URI = "fake://f"
	ctx := context.Background()
	require.NoError(t, e.dp.Deploy(ctx, FunctionSpec{ID: "f", Runtime: "go", Code: ref, MinInstances: 1}))
	<-agents.initCall // the scaler's cold start is initializing
	require.NoError(t, e.dp.Remove(ctx, "f"))
	close(agents.gate) // the cold start completes: instance Ready
	require.Eventually(t, func() bool { return e.dp.Stats().ColdStarts.Count == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, e.dp.Close())
	left, _ := e.pods.List(ctx)
	assert.Empty(t, left, "every pod deleted")
}

func TestCloseAfterAFailedStartIsSafe(t *testing.T) {
	agents := newFakeAgents()
	pods := newFakeEnv(t, agents, nil).pods
	d, err := New(Config{Pods: pods, Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}), Agents: AgentsConfig{Client: agents},
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 3, Max: 1}}}})
	require.NoError(t, err)
	require.Error(t, d.Start(context.Background()))
	_, err = d.Invoke(context.Background(), &Request{FunctionID: "f"})
	assert.ErrorIs(t, err, ErrNotStarted, "a failed Start leaves the Dataplane not started")
	assert.NotPanics(t, func() { _ = d.Close() })
}

func TestRedeployNeverServesTheRemovedCode(t *testing.T) {
	agents := newFakeAgents()
	agents.gate = make(chan struct{})
	e := newFakeEnv(t, agents, nil)
	ctx := context.Background()
	v1 := e.store.Add([]byte("code v1"))
	v1.URI = "fake://v1"
	v2 := e.store.Add([]byte("code v2"))
	v2.URI = "fake://v2"
	require.NoError(t, e.dp.Deploy(ctx, FunctionSpec{ID: "f", Runtime: "go", Code: v1}))
	first := make(chan error, 1)
	go func() { _, err := e.dp.Invoke(ctx, &Request{FunctionID: "f"}); first <- err }()
	<-agents.initCall // v1's cold start is initializing
	require.NoError(t, e.dp.Remove(ctx, "f"))
	require.Error(t, <-first)
	require.NoError(t, e.dp.Deploy(ctx, FunctionSpec{ID: "f", Runtime: "go", Code: v2}))
	second := make(chan *Response, 1)
	go func() {
		resp, err := e.dp.Invoke(ctx, &Request{FunctionID: "f"})
		if err != nil {
			t.Error(err)
		}
		second <- resp
	}()
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("f"); return fs.Queued == 1 }, 5*time.Second, time.Millisecond)
	close(agents.gate)
	resp := <-second
	require.NotNil(t, resp)
	assert.Contains(t, string(resp.Body), "digest="+v2.Digest, "served by an instance loaded with v1 (%s)", v1.Digest)
}

func TestOneColdStartDoesNotTurnSheddingOn(t *testing.T) {
	agents := newFakeAgents()
	e := newFakeEnv(t, agents, func(c *Config) { c.DisableShedding = false })
	deployAndWarm(t, e, FunctionSpec{ID: "warm", MinInstances: 1})
	agents.gate = make(chan struct{})
	ref := e.store.Add([]byte("cold"))
	ref.URI = "fake://cold"
	require.NoError(t, e.dp.Deploy(context.Background(), FunctionSpec{ID: "cold", Runtime: "go", Code: ref}))
	done := make(chan error, 1)
	go func() { _, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "cold"}); done <- err }()
	<-agents.initCall
	// Hold the cold start across several control intervals (100 ms).
	timer := time.NewTimer(300 * time.Millisecond)
	<-timer.C
	close(agents.gate)
	require.NoError(t, <-done)
	_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "warm", Priority: loadshed.Sheddable})
	assert.NoError(t, err, "one cold start on an idle node must not make it shed")
	assert.False(t, e.dp.Stats().Shedding)
}

func TestDeployRejectsWhatTheAgentProtocolRejects(t *testing.T) {
	e := newFakeEnv(t, newFakeAgents(), nil)
	ref := e.store.Add([]byte("x"))
	ref.URI = "fake://x"
	err := e.dp.Deploy(context.Background(), FunctionSpec{ID: "f", Runtime: "go", Code: ref, Env: map[string]string{"BIG": strings.Repeat("v", 5000)}})
	var se *SpecError
	require.ErrorAs(t, err, &se)
}

func TestInstanceLevelCodesLeaveTheGatewayAs502(t *testing.T) {
	agents := newFakeAgents()
	agents.handler = func(w http.ResponseWriter, r *http.Request, _ string) {
		wire.WriteError(w, "", 0, lifecycle.CodeInstanceReassigned, "this pod serves another function")
	}
	e := newFakeEnv(t, agents, nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	gw := httptest.NewServer(e.dp)
	defer gw.Close()
	resp, err := http.Post(gw.URL+"/invoke/f", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, string(lifecycle.CodeInstanceFailure), resp.Header.Get(lifecycle.HeaderErrorCode))
}

func TestInstancesTheRouterRetiresAreReplacedAndTheirPodsDeleted(t *testing.T) {
	agents := newFakeAgents()
	var reassigned atomic.Bool
	reassigned.Store(true)
	agents.handler = func(w http.ResponseWriter, r *http.Request, _ string) {
		if reassigned.Load() {
			wire.WriteError(w, "", 0, lifecycle.CodeInstanceReassigned, "this pod serves another function")
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
	e := newFakeEnv(t, agents, nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	podID := e.dp.Routes("f")[0].Instance.PodID
	_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
	require.Error(t, err)
	reassigned.Store(false)
	require.Eventually(t, func() bool { _, alive := e.pods.Get(podID); return !alive }, 5*time.Second, 5*time.Millisecond,
		"the retired instance's pod is deleted")
	require.Eventually(t, func() bool { return e.dp.router.Stats("f").Routable == 1 }, 5*time.Second, 5*time.Millisecond,
		"a replacement keeps MinInstances")
	_, err = e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
	assert.NoError(t, err)
}

func TestInvokeRejectsABadPathBeforeAdmission(t *testing.T) {
	e := newFakeEnv(t, newFakeAgents(), nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f", Path: "/a b\x7f"})
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)
	assert.Equal(t, 0, e.dp.router.Stats("f").InFlight)
}

// A Remove whose context runs out while a request is still in flight still
// deletes the function's pods: the drain is bounded by ctx, the deletion is
// not.
func TestRemoveThatTimesOutStillDeletesThePods(t *testing.T) {
	agents := newFakeAgents()
	release := make(chan struct{})
	agents.handler = func(w http.ResponseWriter, r *http.Request, _ string) {
		<-release
		_, _ = w.Write([]byte("late"))
	}
	e := newFakeEnv(t, agents, nil)
	defer close(release)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	podID := e.dp.Routes("f")[0].Instance.PodID
	go func() { _, _ = e.dp.Invoke(context.Background(), &Request{FunctionID: "f"}) }()
	require.Eventually(t, func() bool { return e.dp.router.Stats("f").InFlight == 1 }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_ = e.dp.Remove(ctx, "f")
	_, alive := e.pods.Get(podID)
	assert.False(t, alive, "the pod is deleted although the drain ran out of time")
}

// TestPartitionedCheckerReplacesNothing is the regression test of a health
// checker cut off from the instances (every check fails): it drained 20 of
// 20 healthy instances in 7 s and asked for 20 replacements. Now the panic
// threshold holds: the instances keep serving and no cold start follows.
// (With PanicThreshold: -1 the same test sees instances drained.)
func TestPartitionedCheckerReplacesNothing(t *testing.T) {
	var checks atomic.Int64
	e := newFakeEnv(t, newFakeAgents(), func(c *Config) {
		c.Health = router.HealthConfig{
			Checker: router.CheckerFunc(func(context.Context, *lifecycle.Instance) error {
				checks.Add(1)
				return errors.New("network unreachable")
			}),
			Interval:  5 * time.Millisecond,
			Readiness: router.Probe{Period: 5 * time.Millisecond, FailureThreshold: 3},
			Liveness:  router.Probe{Period: 10 * time.Millisecond, FailureThreshold: 3},
		}
	})
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 6, MaxInstances: 6})
	require.Eventually(t, func() bool { return e.dp.router.Stats("f").Routable == 6 }, 10*time.Second, 5*time.Millisecond)
	cold := e.dp.Stats().ColdStarts.Count
	// Ten failed checks of each instance: three times the readiness and
	// liveness thresholds.
	start := checks.Load()
	require.Eventually(t, func() bool { return checks.Load()-start >= 60 }, 30*time.Second, time.Millisecond)
	st := e.dp.router.Stats("f")
	assert.Equal(t, 6, st.Routable, "no instance drained")
	assert.True(t, st.Panicking)
	assert.Equal(t, cold, e.dp.Stats().ColdStarts.Count, "no replacement")
	resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
