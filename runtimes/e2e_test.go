package runtimes_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/internal/fnbuild"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// The end-to-end tests of the Go functions (cold start, warm hit, init
// failure retried in the same process, a crash replaced, the concurrency
// limit), for the Python and Node.js runtimes: a real Dataplane whose warm
// pools hold real faas-agent processes of runtimes "python" and "node",
// with the runtimes' bootstraps running before any function is known.

// agentDir holds the agent binary, built once; TestMain removes it.
var agentDir string

var agentBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "faas-runtimes-e2e-")
	if err != nil {
		return "", err
	}
	agentDir = dir
	bins, err := fnbuild.BuildAll(context.Background(), dir, local.AgentPackage)
	if err != nil {
		return "", err
	}
	return bins[0], nil
})

type plane struct {
	t    *testing.T
	dp   *faas.Dataplane
	pods *local.Provider
	gw   *httptest.Server
	refs map[string]code.Ref
}

func newPlane(t *testing.T) *plane {
	t.Helper()
	bin, err := agentBin()
	require.NoError(t, err)
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: bin, Nodes: []string{"node-a"}})
	require.NoError(t, err)
	codeDir := t.TempDir()
	refs := map[string]code.Ref{}
	for rt, dir := range map[string]string{"python": "python/testdata/fixture", "node": "node/testdata/fixture"} {
		pkg, err := code.PackDir(dir)
		require.NoError(t, err)
		p := filepath.Join(codeDir, rt+".tar.gz")
		require.NoError(t, os.WriteFile(p, pkg, 0o644))
		refs[rt] = code.RefFor("file://"+p, pkg)
	}
	origin, err := code.NewOrigin(code.OriginConfig{Dir: codeDir})
	require.NoError(t, err)
	dp, err := faas.New(faas.Config{
		Pods: pods, Code: origin,
		Pool:   warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"python": {Min: 1, Max: 3}, "node": {Min: 1, Max: 3}}, ProbeInterval: -1},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	p := &plane{t: t, dp: dp, pods: pods, gw: httptest.NewServer(dp), refs: refs}
	t.Cleanup(func() {
		p.gw.Close()
		require.NoError(t, dp.Close())
		require.NoError(t, pods.Close())
		origin.Close()
	})
	return p
}

func (p *plane) deploy(spec faas.FunctionSpec) {
	p.t.Helper()
	spec.Code = p.refs[spec.Runtime]
	require.NoError(p.t, p.dp.Deploy(context.Background(), spec))
}

func (p *plane) get(path string) (int, string) { return p.do("GET", path) }

func (p *plane) do(method, path string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.gw.URL+path, nil)
	require.NoError(p.t, err)
	resp, err := p.gw.Client().Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	return resp.StatusCode, string(b)
}

func (p *plane) stats(id string, cond func(faas.FunctionStats) bool) faas.FunctionStats {
	p.t.Helper()
	if !assert.Eventually(p.t, func() bool {
		fs, _ := p.dp.FunctionStats(id)
		return cond(fs)
	}, 30*time.Second, 5*time.Millisecond) {
		fs, _ := p.dp.FunctionStats(id)
		p.t.Fatalf("function %s: stats %+v; cold starts %+v", id, fs, p.dp.RecentColdStarts(id, 5))
	}
	fs, _ := p.dp.FunctionStats(id)
	return fs
}

// agentStats asks the agent of the function's one instance for its stats.
func (p *plane) agentStats(id string) lifecycle.Stats {
	p.t.Helper()
	routes := p.dp.Routes(id)
	require.Len(p.t, routes, 1)
	st, err := new(lifecycle.Client).Stats(context.Background(), routes[0].Instance.Control)
	require.NoError(p.t, err)
	return st
}

func TestDataplaneRunsHotLoadedFunctions(t *testing.T) {
	p := newPlane(t)
	for _, rt := range []string{"python", "node"} {
		t.Run(rt, func(t *testing.T) {
			p.t = t
			id := "fx-" + rt
			p.deploy(faas.FunctionSpec{ID: id, Runtime: rt, Concurrency: 4})

			status, body := p.get("/invoke/" + id + "/hello?name=e2e")
			require.Equal(t, 200, status, body)
			require.Equal(t, "hello, e2e\n", body)
			fs := p.stats(id, func(fs faas.FunctionStats) bool { return fs.Requests >= 1 && fs.ColdStarts.Count == 1 })
			require.EqualValues(t, 1, fs.Cold, "the first request waited for a cold start")

			status, _ = p.get("/invoke/" + id + "/hello")
			require.Equal(t, 200, status)
			fs = p.stats(id, func(fs faas.FunctionStats) bool { return fs.Requests >= 2 })
			require.EqualValues(t, 1, fs.ColdStarts.Count, "the second request was warm")
			require.EqualValues(t, 1, fs.WarmHits)

			st := p.agentStats(id)
			require.True(t, st.HotLoad, "the function was hot-loaded into the pod's bootstrap")
			require.Equal(t, rt, st.Runtime)
			require.NotEmpty(t, st.Instance)
		})
	}
}

func TestDataplaneRetriesAFailedInitInTheSameProcess(t *testing.T) {
	p := newPlane(t)
	for _, rt := range []string{"python", "node"} {
		t.Run(rt, func(t *testing.T) {
			p.t = t
			id := "flaky-" + rt
			p.deploy(faas.FunctionSpec{ID: id, Runtime: rt, Concurrency: 4, InitAttempts: 3, Env: map[string]string{"FAIL_INIT_TIMES": "2"}})
			status, body := p.get("/invoke/" + id + "/init-count")
			require.Equal(t, 200, status, body)
			require.Equal(t, "3", body, "two failures and a success, in one process")
			fs := p.stats(id, func(fs faas.FunctionStats) bool { return fs.ColdStarts.Count == 1 })
			require.Zero(t, fs.ColdStarts.Failed)
		})
	}
}

func TestDataplaneReplacesACrashedInstance(t *testing.T) {
	p := newPlane(t)
	for _, rt := range []string{"python", "node"} {
		t.Run(rt, func(t *testing.T) {
			p.t = t
			id := "crash-" + rt
			p.deploy(faas.FunctionSpec{ID: id, Runtime: rt, Concurrency: 4})
			status, _ := p.get("/invoke/" + id + "/hello")
			require.Equal(t, 200, status)
			first := p.agentStats(id)
			require.True(t, first.HotLoad)

			// POST: not retried on another instance (a GET would be, and
			// would crash that one too).
			status, _ = p.do("POST", "/invoke/"+id+"/crash")
			require.Equal(t, http.StatusBadGateway, status, "the request that crashed it fails")
			// The agent's watch reports the death and the router drops the
			// instance (a request sent before that may still fail: it can
			// reach the dying process); a new instance is cold-started, for
			// the next request or by the scaler before it.
			require.Eventually(t, func() bool {
				for _, r := range p.dp.Routes(id) {
					if r.Instance.PodID == first.Instance && r.Routable {
						return false
					}
				}
				return true
			}, 30*time.Second, time.Millisecond)
			status, body := p.get("/invoke/" + id + "/hello?name=again")
			require.Equal(t, 200, status, body)
			require.Equal(t, "hello, again\n", body)
			p.stats(id, func(fs faas.FunctionStats) bool { return fs.ColdStarts.Count >= 2 && fs.Routes.Instances == 1 })
			require.NotEqual(t, first.Instance, p.agentStats(id).Instance, "served by a new pod")
		})
	}
}

func TestDataplaneHonoursTheConcurrencyLimit(t *testing.T) {
	p := newPlane(t)
	for _, rt := range []string{"python", "node"} {
		t.Run(rt, func(t *testing.T) {
			p.t = t
			id := "one-" + rt
			p.deploy(faas.FunctionSpec{ID: id, Runtime: rt, Concurrency: 1, MaxInstances: 1, QueueTimeout: 30 * time.Second})
			status, _ := p.get("/invoke/" + id + "/hello")
			require.Equal(t, 200, status)

			key := filepath.Join(t.TempDir(), "release")
			held := make(chan string, 1)
			go func() { _, body := p.get("/invoke/" + id + "/wait?key=" + key); held <- body }()
			p.stats(id, func(fs faas.FunctionStats) bool { return fs.InFlight == 1 })
			queued := make(chan string, 1)
			go func() { _, body := p.get("/invoke/" + id + "/hello?name=queued"); queued <- body }()
			// The second request waits for the slot: the instance takes
			// one at a time, and there may be only one instance.
			fs := p.stats(id, func(fs faas.FunctionStats) bool { return fs.Queued == 1 })
			require.Equal(t, 1, fs.InFlight)
			require.NoError(t, os.WriteFile(key, nil, 0o644))
			require.Equal(t, "released\n", <-held)
			require.Equal(t, "hello, queued\n", <-queued)
			st := p.agentStats(id)
			require.Equal(t, 1, st.Limit)
			require.Zero(t, st.Rejected, "the dataplane queued it; the agent never had to refuse")
		})
	}
}
