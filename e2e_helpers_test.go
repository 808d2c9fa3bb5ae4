package faas

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/internal/fnbuild"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// Built once per test binary: the agent and the example functions.
var (
	agentBin  string
	functions = map[string]fnbuild.Function{}
	buildDir  string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	buildDir, err = os.MkdirTemp("", "faas-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	ctx := context.Background()
	// One go command builds the agent and the functions.
	bins, err := fnbuild.BuildAll(ctx, filepath.Join(buildDir, "bin"), local.AgentPackage,
		fnbuild.ExamplePackage("hello"), fnbuild.ExamplePackage("sleep"), fnbuild.ExamplePackage("flaky-init"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	agentBin = bins[0]
	for i, name := range []string{"hello", "sleep", "flaky-init"} {
		fn, err := fnbuild.PackBinary(bins[i+1], name, code.Manifest{}, buildDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		functions[name] = fn
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// env is a running Dataplane over local agent processes.
type env struct {
	t      testing.TB
	dp     *Dataplane
	pods   *local.Provider
	origin *code.SchemeStore
	gw     *httptest.Server
}

type envOption func(*Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a", "node-b"}})
	require.NoError(t, err)
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(t, err)
	cfg := Config{
		Pods: pods,
		Code: origin,
		Pool: warmpool.Config{
			Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}},
			ProbeInterval: -1,
		},
		// Short windows so that scaling reacts within a test's time.
		Scaler: ScalerConfig{
			Meter:          concurrency.MeterConfig{StableWindow: 2 * time.Second, PanicWindow: 500 * time.Millisecond, Bucket: 100 * time.Millisecond},
			Interval:       100 * time.Millisecond,
			SampleInterval: 50 * time.Millisecond,
		},
		Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	dp, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	e := &env{t: t, dp: dp, pods: pods, origin: origin}
	e.gw = httptest.NewServer(dp)
	t.Cleanup(func() {
		e.gw.Close()
		require.NoError(t, dp.Close())
		require.NoError(t, pods.Close())
		origin.Close()
		remaining, _ := pods.List(context.Background())
		require.Empty(t, remaining, "no agent process survives Close")
	})
	return e
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FAAS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (e *env) deploy(spec FunctionSpec) {
	e.t.Helper()
	require.NoError(e.t, e.dp.Deploy(context.Background(), spec))
}

func specFor(id, fn string) FunctionSpec {
	return FunctionSpec{ID: id, Runtime: "go", Code: functions[fn].Ref, Concurrency: 4}
}

// get sends a gateway request and returns status, headers and body.
func (e *env) do(method, path string, header map[string]string, body string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.gw.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.gw.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func requireWireError(t testing.TB, status int, h http.Header, wantStatus int, code lifecycle.ErrorCode) {
	t.Helper()
	require.Equal(t, wantStatus, status)
	require.Equal(t, string(code), h.Get(lifecycle.HeaderErrorCode))
	require.NotEmpty(t, h.Get(lifecycle.HeaderErrorMessage))
	require.NotEmpty(t, h.Get(lifecycle.HeaderRequestID))
}

// statsAfter returns the function's stats once it has recorded n requests:
// the gateway records a request after the response went out, so a client
// may see the answer a moment before the statistics do.
func (e *env) statsAfter(id string, n uint64) FunctionStats {
	e.t.Helper()
	var fs FunctionStats
	require.Eventually(e.t, func() bool {
		fs, _ = e.dp.FunctionStats(id)
		return fs.Requests >= n
	}, 5*time.Second, time.Millisecond)
	return fs
}
