package coldstart

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/faastest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

type reports struct {
	mu  sync.Mutex
	all []Report
}

func (r *reports) add(rep Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, rep)
}

func (r *reports) list() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.all...)
}

func newStarter(t *testing.T, pool Pool, agent AgentClient, mod func(*Config, *Hooks)) (*Starter, *reports) {
	t.Helper()
	reps := &reports{}
	cfg := Config{InitRetryDelay: -1}
	hooks := Hooks{OnColdStart: reps.add}
	if mod != nil {
		mod(&cfg, &hooks)
	}
	s, err := New(pool, agent, cfg, hooks)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, reps
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(nil, &fakeAgent{}, Config{}, Hooks{})
	require.Error(t, err)
	_, err = New(&fakePool{}, nil, Config{}, Hooks{})
	require.Error(t, err)
	_, err = New(&fakePool{}, &fakeAgent{}, Config{LoadTimeout: -1}, Hooks{})
	require.Error(t, err)
	_, err = New(&fakePool{}, &fakeAgent{}, Config{MaxConcurrent: -1}, Hooks{})
	require.Error(t, err)
}

func TestStartReachesReady(t *testing.T) {
	pool, agent := &fakePool{}, &fakeAgent{timings: lifecycle.Timings{FetchMillis: 2.5}}
	var seen []lifecycle.State
	var mu sync.Mutex
	obs := lifecycle.ObserverFunc(func(_ *lifecycle.Instance, tr lifecycle.Transition) {
		mu.Lock()
		seen = append(seen, tr.To)
		mu.Unlock()
	})
	s, reps := newStarter(t, pool, agent, func(_ *Config, h *Hooks) { h.Observers = []lifecycle.Observer{obs} })

	res, err := s.Start(context.Background(), testFunction("orders/resize"))
	require.NoError(t, err)
	inst := res.Instance
	assert.Equal(t, lifecycle.Ready, inst.State())
	assert.Equal(t, lifecycle.Info{ID: "i-pod-1", FunctionID: "orders/resize", PodID: "pod-1", Node: "n2", Addr: "10.0.0.1:8080", Runtime: "go"}, inst.Info)
	assert.Equal(t, []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready}, seen)
	assert.Equal(t, "pod-1", res.Pod.ID)

	b := res.Breakdown
	assert.Equal(t, 2500*time.Microsecond, b.Fetch, "fetch comes from the agent's timings")
	assert.True(t, b.CacheHit)
	assert.Equal(t, 1, b.InitAttempts)
	assert.GreaterOrEqual(t, b.Total, b.Queue+b.Take+b.Load+b.Init)

	rs := reps.list()
	require.Len(t, rs, 1)
	assert.NoError(t, rs[0].Err)
	assert.Equal(t, Report{FunctionID: "orders/resize", InstanceID: "i-pod-1", PodID: "pod-1", Node: "n2", Breakdown: b}, rs[0])
	_, deleted := pool.stats()
	assert.Empty(t, deleted)
}

func TestStartFailuresNameTheStepAndDeleteThePod(t *testing.T) {
	callErr := &lifecycle.CallError{Op: "load", Addr: "x", Reached: true, Err: errors.New("malformed load response (HTTP 200): invalid character")}
	tests := []struct {
		name      string
		pool      func(p *fakePool)
		agent     func(a *fakeAgent)
		cfg       func(c *Config)
		step      Step
		is        error
		podTaken  bool
		attempts  int
		initCalls int64
	}{
		{name: "no pod", pool: func(p *fakePool) { p.takeErr = errTest }, step: StepTake, is: errTest},
		{name: "load failed", agent: func(a *fakeAgent) { a.loadErr = lifecycle.Errorf(lifecycle.CodeLoadFailed, "exec: no such file") },
			step: StepLoad, is: lifecycle.CodeLoadFailed, podTaken: true},
		{name: "code fetch failed", agent: func(a *fakeAgent) { a.loadErr = lifecycle.Errorf(lifecycle.CodeCodeFetch, "origin down") },
			step: StepFetch, is: lifecycle.CodeCodeFetch, podTaken: true},
		{name: "bad package", agent: func(a *fakeAgent) { a.loadErr = lifecycle.Errorf(lifecycle.CodeBadPackage, "digest mismatch") },
			step: StepFetch, is: lifecycle.CodeBadPackage, podTaken: true},
		{name: "agent answers garbage", agent: func(a *fakeAgent) { a.loadErr = callErr },
			step: StepLoad, is: lifecycle.ErrNoResponse, podTaken: true},
		{name: "agent loaded another function", agent: func(a *fakeAgent) { a.loadFunction = "someone/else" },
			step: StepLoad, is: ErrBadAgentResponse, podTaken: true},
		{name: "load timeout", agent: func(a *fakeAgent) { a.loadGate = make(chan struct{}) }, cfg: func(c *Config) { c.LoadTimeout = time.Millisecond },
			step: StepLoad, is: context.DeadlineExceeded, podTaken: true},
		{name: "init keeps failing", agent: func(a *fakeAgent) {
			a.initErrs = []error{lifecycle.CodeInitFailed, lifecycle.CodeInitFailed, lifecycle.Errorf(lifecycle.CodeInitFailed, "db unreachable")}
		}, step: StepInit, is: lifecycle.CodeInitFailed, podTaken: true, attempts: 3, initCalls: 3},
		{name: "process exited: not retried", agent: func(a *fakeAgent) { a.initErrs = []error{lifecycle.CodeFunctionExited} },
			step: StepInit, is: lifecycle.CodeFunctionExited, podTaken: true, attempts: 1, initCalls: 1},
		{name: "init answered for another function", agent: func(a *fakeAgent) { a.initFunction = "someone/else" },
			step: StepInit, is: ErrBadAgentResponse, podTaken: true, attempts: 1, initCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, agent := &fakePool{}, &fakeAgent{}
			if tt.pool != nil {
				tt.pool(pool)
			}
			if tt.agent != nil {
				tt.agent(agent)
			}
			var inst *lifecycle.Instance
			obs := lifecycle.ObserverFunc(func(in *lifecycle.Instance, _ lifecycle.Transition) { inst = in })
			s, reps := newStarter(t, pool, agent, func(c *Config, h *Hooks) {
				h.Observers = []lifecycle.Observer{obs}
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			_, err := s.Start(context.Background(), testFunction("f"))
			var se *StepError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.step, se.Step)
			assert.Equal(t, "f", se.FunctionID)
			require.ErrorIs(t, err, tt.is)
			assert.Contains(t, err.Error(), string(tt.step)+" failed")
			assert.Equal(t, tt.attempts, se.Attempts)
			assert.Equal(t, tt.initCalls, agent.inits.Load())
			_, deleted := pool.stats()
			if tt.podTaken {
				assert.Equal(t, "pod-1", se.PodID)
				assert.Equal(t, []string{"pod-1"}, deleted, "the pod of a failed cold start is deleted")
				require.NotNil(t, inst)
				assert.Equal(t, lifecycle.Failed, inst.State())
			} else {
				assert.Empty(t, se.PodID)
				assert.Empty(t, deleted)
			}
			rs := reps.list()
			require.Len(t, rs, 1, "failed cold starts are reported too")
			assert.Equal(t, err, rs[0].Err)
			assert.Equal(t, se.PodID, rs[0].PodID)
		})
	}
}

func TestInitIsRetriedInTheSameProcess(t *testing.T) {
	pool := &fakePool{}
	agent := &fakeAgent{initErrs: []error{lifecycle.CodeInitFailed, lifecycle.CodeTimeout}}
	s, _ := newStarter(t, pool, agent, func(c *Config, _ *Hooks) { c.InitRetryDelay = time.Microsecond })
	res, err := s.Start(context.Background(), testFunction("f"))
	require.NoError(t, err)
	assert.Equal(t, 3, res.Breakdown.InitAttempts)
	assert.EqualValues(t, 1, agent.loads.Load(), "no second load, no second pod")
	takes, _ := pool.stats()
	assert.Equal(t, 1, takes)

	// A function's own attempts override the Starter's.
	agent2 := &fakeAgent{initErrs: []error{lifecycle.CodeInitFailed, lifecycle.CodeInitFailed}}
	s2, _ := newStarter(t, &fakePool{}, agent2, nil)
	fn := testFunction("f")
	fn.InitAttempts = 2
	_, err = s2.Start(context.Background(), fn)
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 2, se.Attempts)
}

func TestInvalidFunctionTakesNoPod(t *testing.T) {
	tests := map[string]func(f *Function){
		"no digest":         func(f *Function) { f.Code.Digest = "" },
		"bad digest":        func(f *Function) { f.Code.Digest = "sha256:XYZ" },
		"no size":           func(f *Function) { f.Code.Size = 0 },
		"no runtime":        func(f *Function) { f.Runtime = "" },
		"bad ID":            func(f *Function) { f.ID = "../etc" },
		"negative attempts": func(f *Function) { f.InitAttempts = -1 },
		"bad protocol":      func(f *Function) { f.Protocol = "gopher" },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			pool := &fakePool{}
			s, reps := newStarter(t, pool, &fakeAgent{}, nil)
			fn := testFunction("f")
			mod(&fn)
			_, err := s.Start(context.Background(), fn)
			require.ErrorIs(t, err, ErrInvalidFunction)
			_, err = s.Ensure(context.Background(), fn, 1)
			require.ErrorIs(t, err, ErrInvalidFunction)
			takes, _ := pool.stats()
			assert.Zero(t, takes)
			assert.Empty(t, reps.list())
		})
	}
}

func TestGarbageTimingsAreIgnored(t *testing.T) {
	for _, ms := range []float64{-5, math.NaN(), math.Inf(1), 1e300} {
		agent := &fakeAgent{timings: lifecycle.Timings{FetchMillis: ms}}
		s, _ := newStarter(t, &fakePool{}, agent, nil)
		res, err := s.Start(context.Background(), testFunction("f"))
		require.NoError(t, err)
		assert.Zero(t, res.Breakdown.Fetch, "fetch %v ms", ms)
	}
}

func TestStartPrefersNodesThatCacheTheCode(t *testing.T) {
	fn := testFunction("f")
	pool := &fakePool{idle: []warmpool.Pod{
		{ID: "a", Node: "n1", Addr: "a:1", Runtime: "go"},
		{ID: "b", Node: "n2", Addr: "b:1", Runtime: "go"},
		{ID: "c", Node: "n3", Addr: "c:1", Runtime: "go"},
	}}
	loc := LocalityFunc(func(node, digest string) bool { return node == "n2" && digest == fn.Code.Digest })
	s, _ := newStarter(t, pool, &fakeAgent{}, func(c *Config, _ *Hooks) { c.Locality = loc })
	res, err := s.Start(context.Background(), fn)
	require.NoError(t, err)
	assert.Equal(t, "n2", res.Pod.Node)
}

func TestQueueTimeoutUnderTheGlobalCap(t *testing.T) {
	pool := &fakePool{}
	agent := &fakeAgent{loadGate: make(chan struct{})}
	s, _ := newStarter(t, pool, agent, func(c *Config, _ *Hooks) {
		c.MaxConcurrent = 1
		c.QueueTimeout = time.Millisecond
	})
	first := make(chan error, 1)
	go func() {
		_, err := s.Start(context.Background(), testFunction("a"))
		first <- err
	}()
	require.Eventually(t, func() bool { return agent.loadsInFlight.Load() == 1 }, 10*time.Second, time.Millisecond)
	_, err := s.Start(context.Background(), testFunction("b"))
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepQueue, se.Step)
	takes, _ := pool.stats()
	assert.Equal(t, 1, takes, "a queued cold start takes no pod")
	close(agent.loadGate)
	require.NoError(t, <-first)
}

func TestStartWithTheWarmPool(t *testing.T) {
	provider := faastest.NewPodProvider(faastest.PodProviderConfig{Nodes: []string{"n1", "n2"}})
	m, err := warmpool.New(provider, warmpool.Config{
		Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}},
		ProbeInterval: -1,
	})
	require.NoError(t, err)
	defer m.Close()
	agent := &fakeAgent{}
	s, _ := newStarter(t, m, agent, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := s.Ensure(ctx, testFunction("f"), 1)
	require.NoError(t, err)
	assert.Equal(t, lifecycle.Ready, res.Instance.State())
	_, ok := provider.Get(res.Pod.ID)
	assert.True(t, ok)

	agent.set(func(a *fakeAgent) { a.loadErr = lifecycle.CodeLoadFailed })
	_, err = s.Ensure(ctx, testFunction("g"), 1)
	var se *StepError
	require.ErrorAs(t, err, &se)
	_, ok = provider.Get(se.PodID)
	assert.False(t, ok, "the failed cold start's pod is deleted from the provider")
}

// An agent that answers garbage over real HTTP (through the real lifecycle
// client) fails the cold start in the load step with a clear error, and the
// pod is deleted.
func TestAgentAnsweringGarbage(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
		want error
	}{
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("\x00\x01 hello")) }, lifecycle.ErrNoResponse},
		{"another function", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"function_id":"evil","pid":1}`))
		}, ErrBadAgentResponse},
		{"error without a code", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "teapot", http.StatusTeapot) },
			lifecycle.CodeInstanceFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			client, err := lifecycle.NewClient(lifecycle.ClientConfig{HTTPClient: srv.Client()})
			require.NoError(t, err)
			pool := &fakePool{idle: []warmpool.Pod{{ID: "p", Node: "n", Control: lifecycle.Control{Addr: srv.Listener.Addr().String(), Token: lifecycle.NewControlToken()}, Runtime: "go"}}}
			s, _ := newStarter(t, pool, client, nil)
			_, err = s.Start(context.Background(), testFunction("f"))
			var se *StepError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, StepLoad, se.Step)
			require.ErrorIs(t, err, tt.want)
			_, deleted := pool.stats()
			assert.Equal(t, []string{"p"}, deleted)
		})
	}
}
