package prometheus_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	faasprom "github.com/faasplane/faas/contrib/prometheus"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// fakeAgent loads and initializes at once.
type fakeAgent struct{}

func (fakeAgent) Load(_ context.Context, _ lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error) {
	return lifecycle.LoadResponse{FunctionID: req.FunctionID}, nil
}

func (fakeAgent) Initialize(_ context.Context, _ lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error) {
	return lifecycle.InitializeResponse{FunctionID: req.FunctionID}, nil
}

// answer is an in-memory transport: every invocation gets "ok" with the
// agent's billed-duration trailer, without a network.
type answer struct{}

func (answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Trailer: http.Header{lifecycle.HeaderBilledMillis: {"1"}},
		Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

// newInMemoryDataplane is a started Dataplane whose function "hot" has one
// Ready instance with 1000 slots, reached through the in-memory transport:
// Invoke runs the whole in-process hot path (lookup, shedder, pick and
// acquire, the exchange, release, statistics and the observer) without a
// network.
func newInMemoryDataplane(tb testing.TB, obs faas.Observer) *faas.Dataplane {
	tb.Helper()
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	ref := store.Add([]byte("a function package"))
	ref.URI = "fake://hot"
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{})
	dp, err := faas.New(faas.Config{
		Pods: pods, Code: store, Observer: obs,
		Agents: faas.AgentsConfig{Client: fakeAgent{}, Transport: answer{}},
		Pool:   warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}}, Prober: pods, ProbeInterval: -1},
		Health: router.HealthConfig{Checker: router.CheckerFunc(func(context.Context, *lifecycle.Instance) error { return nil })},
	})
	require.NoError(tb, err)
	require.NoError(tb, dp.Start(context.Background()))
	tb.Cleanup(func() { _ = dp.Close() })
	require.NoError(tb, dp.Deploy(context.Background(), faas.FunctionSpec{ID: "hot", Runtime: "go", Code: ref, Concurrency: 1000, MinInstances: 1}))
	require.Eventually(tb, func() bool { fs, _ := dp.FunctionStats("hot"); return fs.Routes.Routable == 1 }, 10*time.Second, time.Millisecond)
	return dp
}

// BenchmarkInvokeObserved measures the Prometheus observer's cost on the
// in-process hot path: the same Invoke without and with it, in one run.
func BenchmarkInvokeObserved(b *testing.B) {
	m, err := faasprom.New(faasprom.Config{})
	require.NoError(b, err)
	// Both Dataplanes live through both runs, so that each runs beside
	// the same background work.
	planes := []struct {
		name string
		dp   *faas.Dataplane
	}{{"observer=none", newInMemoryDataplane(b, nil)}, {"observer=prometheus", newInMemoryDataplane(b, m)}}
	req := &faas.Request{FunctionID: "hot", RequestID: "bench"}
	ctx := context.Background()
	for _, p := range planes {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.dp.Invoke(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkObserveRequest is the observer's own cost per request.
func BenchmarkObserveRequest(b *testing.B) {
	m, err := faasprom.New(faasprom.Config{})
	require.NoError(b, err)
	t0 := time.Now()
	rec := faas.RequestRecord{FunctionID: "hot", Start: t0, Sent: t0, Latency: 3 * time.Millisecond, BilledBy: faas.BilledByAgent, Billed: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest(rec)
	}
}
