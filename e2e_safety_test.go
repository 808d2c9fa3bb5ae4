package faas

import (
	"context"
	"math/rand/v2"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

// TestGatewayCannotReachTheControlProtocol is the regression test of the
// attack on the agents through the gateway: protocol paths and bodies sent
// to /invoke/{id}/... reach the function verbatim; they neither retire nor
// reload an instance, nor reveal anything of the agent.
func TestGatewayCannotReachTheControlProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("hello", "hello")
	spec.MinInstances = 2
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("hello"); return fs.Routes.Routable >= 2 }, 30*time.Second, 10*time.Millisecond)
	before := map[string]bool{}
	for _, ri := range e.dp.Routes("hello") {
		before[ri.Instance.ID] = true
	}
	coldBefore := e.dp.Stats().ColdStarts.Count

	attacks := []struct{ method, path, body string }{
		{"POST", "/invoke/hello/v1/initialize", `{"function_id":"x"}`},
		{"POST", "/invoke/hello/v1/load", `{"function_id":"x","runtime":"go","code":{"uri":"file:///etc/passwd"}}`},
		{"GET", "/invoke/hello/v1/ping", ""},
		{"GET", "/invoke/hello/v1/stats", ""},
		{"GET", "/invoke/hello/v1/watch?state=ready", ""},
	}
	for range 5 { // enough to hit both instances
		for _, a := range attacks {
			status, h, body := e.do(a.method, a.path, nil, a.body)
			require.Equal(t, http.StatusOK, status, "%s %s: %s", a.method, a.path, body)
			require.Empty(t, h.Get(lifecycle.HeaderErrorCode), "%s %s answered by faasplane", a.method, a.path)
			want := "hello, world\n"
			if a.body != "" {
				want = a.body
			}
			require.Equal(t, want, body, "%s %s reached the function", a.method, a.path)
		}
	}
	after := map[string]bool{}
	for _, ri := range e.dp.Routes("hello") {
		after[ri.Instance.ID] = true
		assert.Equal(t, lifecycle.Ready, ri.Instance.State())
	}
	assert.Equal(t, before, after, "no instance retired or replaced")
	assert.Equal(t, coldBefore, e.dp.Stats().ColdStarts.Count, "no cold start")
	fs := e.statsAfter("hello", uint64(5*len(attacks)))
	assert.Equal(t, fs.Requests, fs.OK)
}

// pidOf returns the PID of an instance's function process, from its agent.
func pidOf(t *testing.T, inst *lifecycle.Instance) int {
	t.Helper()
	ping, err := new(lifecycle.Client).Ping(context.Background(), inst.Control)
	require.NoError(t, err)
	require.Positive(t, ping.PID)
	return ping.PID
}

// failures counts the answers of traffic that are not 200.
func failures(counts map[string]int) int {
	n := 0
	for k, c := range counts {
		if k != "200 " {
			n += c
		}
	}
	return n
}

// TestKilledFunctionProcessesOnlyCostTheirInFlightRequests: kill -9 of the
// function processes of two of three instances under steady load (their
// agents live on and would answer function_exited at once). The routes go
// at once, through the agents' watches, and requests that found a dead
// instance are retried elsewhere or wait for its replacement: at most the
// requests in flight on the killed processes fail.
func TestKilledFunctionProcessesOnlyCostTheirInFlightRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("sleep", "sleep")
	spec.MinInstances = 3
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("sleep"); return fs.Routes.Routable >= 3 }, 30*time.Second, 10*time.Millisecond)

	const workers = 6
	tr := startTraffic(e, workers, "/invoke/sleep?ms=20")
	tr.waitRequests(t, 100)
	victims := e.dp.Routes("sleep")[:2]
	for _, v := range victims {
		require.NoError(t, syscall.Kill(pidOf(t, v.Instance), syscall.SIGKILL))
	}
	for _, v := range victims {
		require.Eventually(t, func() bool { return !v.Instance.State().Live() }, 5*time.Second, time.Millisecond,
			"the dead instance leaves the routes without a request or a health check")
	}
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("sleep"); return fs.Routes.Routable >= 3 }, 30*time.Second, 10*time.Millisecond,
		"replacements serve")
	tr.waitRequests(t, 200)
	counts := tr.halt()
	t.Logf("answers: %v", counts)
	// Each killed process had at most its share of the closed-loop
	// workers' requests in flight.
	assert.LessOrEqual(t, failures(counts), workers, "only requests in flight on the killed processes fail")
}

// TestRandomFunctionKillsUnderLoad is a short chaos run: function
// processes are killed at random while traffic flows; every failure is a
// request that was in flight on a killed process.
func TestRandomFunctionKillsUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spec := specFor("sleep", "sleep")
	spec.MinInstances = 3
	e.deploy(spec)
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("sleep"); return fs.Routes.Routable >= 3 }, 30*time.Second, 10*time.Millisecond)

	const workers, kills = 6, 6
	tr := startTraffic(e, workers, "/invoke/sleep?ms=10")
	rng := rand.New(rand.NewPCG(1, 2))
	for range kills {
		tr.waitRequests(t, 50)
		var live []*lifecycle.Instance
		require.Eventually(t, func() bool {
			live = live[:0]
			for _, ri := range e.dp.Routes("sleep") {
				if ri.Routable {
					live = append(live, ri.Instance)
				}
			}
			return len(live) >= 2
		}, 30*time.Second, 5*time.Millisecond)
		v := live[rng.IntN(len(live))]
		ping, err := new(lifecycle.Client).Ping(context.Background(), v.Control)
		if err != nil {
			continue // it died on its own account meanwhile; pick again next round
		}
		require.NoError(t, syscall.Kill(ping.PID, syscall.SIGKILL))
	}
	tr.waitRequests(t, 100)
	counts := tr.halt()
	t.Logf("answers after %d kills: %v", kills, counts)
	assert.LessOrEqual(t, failures(counts), kills*workers/2, "at most the requests in flight on the killed processes fail")
	assert.Positive(t, counts["200 "])
}
