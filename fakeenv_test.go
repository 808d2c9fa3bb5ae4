package faas

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// The fake environment: a started Dataplane over faastest's PodProvider,
// whose pods are httptest servers playing the agent's invocation side, and
// a fake coldstart.Agent whose Initialize can be held on a gate. It runs
// the Dataplane's real paths without processes, so its tests are fast and
// can stop a cold start at a chosen point.

// fakeAgents is a coldstart.Agent plus one HTTP "agent" server per pod.
// Each pod's server answers invocations with the digest it loaded.
type fakeAgents struct {
	mu       sync.Mutex
	loaded   map[string]string // addr -> digest
	servers  []*httptest.Server
	gate     chan struct{} // when non-nil, Initialize waits for it
	initCall chan string   // addr of each Initialize call (buffered)
	invokes  atomic.Int64
	loads    atomic.Int64
	loadErr  error                                                       // when set, every Load fails with it
	handler  func(w http.ResponseWriter, r *http.Request, digest string) // optional
}

func newFakeAgents() *fakeAgents {
	return &fakeAgents{loaded: map[string]string{}, initCall: make(chan string, 100)}
}

func (f *fakeAgents) addr(p warmpool.Pod) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.invokes.Add(1)
		_, _ = io.ReadAll(r.Body)
		f.mu.Lock()
		h := f.handler
		f.mu.Unlock()
		digest := f.digestOf(r.Host)
		if h != nil {
			h(w, r, digest)
			return
		}
		fmt.Fprintf(w, "digest=%s uri=%s", digest, r.RequestURI)
	}))
	f.mu.Lock()
	f.servers = append(f.servers, srv)
	f.mu.Unlock()
	return srv.Listener.Addr().String()
}

func (f *fakeAgents) digestOf(addr string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loaded[addr]
}

func (f *fakeAgents) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.servers {
		s.Close()
	}
}

// control makes a pod's control endpoint its invocation server, so that
// Load and Initialize name the pod by the address invocations reach.
func (f *fakeAgents) control(p warmpool.Pod) lifecycle.Control {
	return lifecycle.Control{Addr: p.Addr, Token: "fake-token-" + p.ID}
}

func (f *fakeAgents) Load(ctx context.Context, ctl lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error) {
	f.loads.Add(1)
	f.mu.Lock()
	if err := f.loadErr; err != nil {
		f.mu.Unlock()
		return lifecycle.LoadResponse{}, err
	}
	f.loaded[ctl.Addr] = req.Code.Digest
	f.mu.Unlock()
	return lifecycle.LoadResponse{FunctionID: req.FunctionID}, nil
}

func (f *fakeAgents) Initialize(ctx context.Context, ctl lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error) {
	f.initCall <- ctl.Addr
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return lifecycle.InitializeResponse{}, ctx.Err()
		}
	}
	return lifecycle.InitializeResponse{FunctionID: req.FunctionID}, nil
}

type fakeEnv struct {
	dp     *Dataplane
	pods   *faastest.PodProvider
	agents *fakeAgents
	store  *faastest.CodeStore
}

func newFakeEnv(t *testing.T, agents *fakeAgents, edit func(*Config)) *fakeEnv {
	t.Helper()
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{Addr: agents.addr, Control: agents.control})
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	cfg := Config{
		Pods:   pods,
		Code:   store,
		Agents: AgentsConfig{Client: agents},
		Pool: warmpool.Config{
			Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 4}},
			Prober:        pods,
			ProbeInterval: -1,
		},
		Health:          router.HealthConfig{Checker: router.CheckerFunc(func(context.Context, *lifecycle.Instance) error { return nil })},
		Scaler:          ScalerConfig{Interval: 50 * time.Millisecond, SampleInterval: 20 * time.Millisecond},
		DisableShedding: true,
	}
	if edit != nil {
		edit(&cfg)
	}
	dp, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, dp.Start(context.Background()))
	t.Cleanup(agents.close)
	t.Cleanup(func() { _ = dp.Close() })
	return &fakeEnv{dp: dp, pods: pods, agents: agents, store: store}
}

// deployAndWarm deploys spec with a fake package and waits until its
// MinInstances (at least one) are routable.
func deployAndWarm(t *testing.T, e *fakeEnv, spec FunctionSpec) code.Ref {
	t.Helper()
	ref := e.store.Add([]byte("code " + spec.ID))
	ref.URI = "fake://" + spec.ID
	spec.Runtime, spec.Code = "go", ref
	require.NoError(t, e.dp.Deploy(context.Background(), spec))
	require.Eventually(t, func() bool {
		return e.dp.router.Stats(spec.ID).Routable >= max(spec.MinInstances, 1)
	}, 5*time.Second, 5*time.Millisecond)
	return ref
}
