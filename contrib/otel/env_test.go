package otel_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/internal/fnbuild"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

// Built once per test binary: the agent and the example functions.
var (
	agentBin  string
	functions = map[string]fnbuild.Function{}
	buildDir  string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	var err error
	buildDir, err = os.MkdirTemp("", "faasotel-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	// echoheaders answers with the headers that reached the function.
	names := []string{"hello", "echoheaders"}
	bins, err := fnbuild.BuildAll(context.Background(), filepath.Join(buildDir, "bin"), local.AgentPackage,
		fnbuild.ExamplePackage("hello"), "./testdata/echoheaders")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	agentBin = bins[0]
	for i, name := range names {
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

// env is a running Dataplane over local agent processes, with its gateway.
type env struct {
	t  testing.TB
	dp *faas.Dataplane
	gw *httptest.Server
}

func newEnv(t testing.TB, edit func(*faas.Config)) *env {
	t.Helper()
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a", "node-b"}})
	require.NoError(t, err)
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(t, err)
	cfg := faas.Config{
		Pods: pods, Code: origin,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}}, ProbeInterval: -1},
		Scaler: faas.ScalerConfig{
			Meter:          concurrency.MeterConfig{StableWindow: 2 * time.Second, PanicWindow: 500 * time.Millisecond, Bucket: 100 * time.Millisecond},
			Interval:       100 * time.Millisecond,
			SampleInterval: 50 * time.Millisecond,
			ScaleDownDelay: time.Hour, // the instances stay for the counts
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	dp, err := faas.New(cfg)
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	e := &env{t: t, dp: dp, gw: httptest.NewServer(dp)}
	t.Cleanup(func() {
		e.gw.Close()
		require.NoError(t, dp.Close())
		require.NoError(t, pods.Close())
		origin.Close()
	})
	return e
}

func (e *env) deploy(spec faas.FunctionSpec) {
	e.t.Helper()
	require.NoError(e.t, e.dp.Deploy(context.Background(), spec))
}

func specFor(id, fn string) faas.FunctionSpec {
	return faas.FunctionSpec{ID: id, Runtime: "go", Code: functions[fn].Ref, Concurrency: 4}
}
