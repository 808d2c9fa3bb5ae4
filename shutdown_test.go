package faas

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
)

// holdAgents makes every invocation of the fake agents wait for release.
func holdAgents(agents *fakeAgents) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}, 100), make(chan struct{})
	agents.mu.Lock()
	agents.handler = func(w http.ResponseWriter, r *http.Request, digest string) {
		in <- struct{}{}
		select {
		case <-out:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("done"))
	}
	agents.mu.Unlock()
	var once sync.Once
	return in, func() { once.Do(func() { close(out) }) }
}

// TestShutdownWaitsForRequestsInFlight: Shutdown refuses new requests at
// once, lets the request in flight finish, then deletes every pod.
func TestShutdownWaitsForRequestsInFlight(t *testing.T) {
	agents := newFakeAgents()
	e := newFakeEnv(t, agents, nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	entered, release := holdAgents(agents)

	answered := make(chan error, 1)
	go func() {
		resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
		if err == nil && string(resp.Body) != "done" {
			err = assert.AnError
		}
		answered <- err
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- e.dp.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool { return e.dp.state.Load() == stateStopping }, 5*time.Second, time.Millisecond)
	_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
	require.ErrorIs(t, err, ErrClosed, "new requests are refused while it drains")
	select {
	case <-stopped:
		t.Fatal("Shutdown returned while a request was in flight")
	default:
	}
	release()
	require.NoError(t, <-answered, "the request in flight finished")
	require.NoError(t, <-stopped)
	left, _ := e.pods.List(context.Background())
	assert.Empty(t, left, "every pod deleted")
	require.ErrorIs(t, e.dp.Deploy(context.Background(), FunctionSpec{ID: "g", Runtime: "go"}), ErrClosed)
	require.NoError(t, e.dp.Close(), "Close after Shutdown is a no-op")
}

// TestShutdownThatRunsOutOfTimeStillCleansUp: a context that ends before
// the requests in flight makes Shutdown return its error, terminate the
// instances anyway and delete their pods.
func TestShutdownThatRunsOutOfTimeStillCleansUp(t *testing.T) {
	agents := newFakeAgents()
	e := newFakeEnv(t, agents, nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	entered, release := holdAgents(agents)
	defer release()
	answered := make(chan error, 1)
	go func() {
		_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f"})
		answered <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, e.dp.Shutdown(ctx), context.Canceled)
	for _, ri := range e.dp.Routes("f") {
		assert.Equal(t, lifecycle.Terminated, ri.Instance.State())
	}
	left, _ := e.pods.List(context.Background())
	assert.Empty(t, left)
	release()
	<-answered
}

// TestStartContextEndsTheDataplane: the Dataplane runs until the context
// given to Start is done, then shuts itself down.
func TestStartContextEndsTheDataplane(t *testing.T) {
	agents := newFakeAgents()
	t.Cleanup(agents.close)
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{Addr: agents.addr, Control: agents.control})
	d, err := New(Config{Pods: pods, Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}), Agents: AgentsConfig{Client: agents}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, d.Start(ctx))
	require.True(t, d.running())
	cancel()
	require.Eventually(t, func() bool { return d.state.Load() == stateClosed }, 10*time.Second, time.Millisecond)
	_, err = d.Invoke(context.Background(), &Request{FunctionID: "f"})
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, d.Start(context.Background()), ErrClosed)
}

// TestColdStartBackoffOnVirtualTime: a function whose cold starts keep
// failing is retried with exponential backoff (100 ms, doubling), not at
// every scaling round: over 10 s of virtual time and 100 rounds, about
// seven attempts.
func TestColdStartBackoffOnVirtualTime(t *testing.T) {
	agents := newFakeAgents()
	agents.loadErr = lifecycle.Errorf(lifecycle.CodeLoadFailed, "the binary crashes")
	clk := faastest.NewClock(time.Time{})
	e := newFakeEnv(t, agents, func(c *Config) {
		c.Clock = clk
		c.Pool.Clock, c.Health.Clock = clock.System(), clock.System()
		c.Scaler.Interval = 100 * time.Millisecond
	})
	ref := e.store.Add([]byte("code f"))
	require.NoError(t, e.dp.Deploy(context.Background(), FunctionSpec{ID: "f", Runtime: "go", Code: ref, MinInstances: 1}))
	fn := e.dp.lookup("f")
	for range 100 {
		// One scaling round per step, and its cold start (if any) ends
		// before the next.
		done := e.dp.rounds.Load()
		clk.Advance(100 * time.Millisecond)
		require.Eventually(t, func() bool {
			return e.dp.rounds.Load() > done && e.dp.starter.InFlight(fn.version().cs) == 0
		}, 10*time.Second, time.Millisecond)
	}
	n := agents.loads.Load()
	t.Logf("%d cold starts in 10 s of virtual time", n)
	assert.GreaterOrEqual(t, n, int64(5), "it keeps trying")
	assert.LessOrEqual(t, n, int64(9), "but backs off: 100 rounds, not 100 attempts")
}
