package health

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// No goroutine of the servers, the connections, the sources or the
// publishers outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer starts an in-process NATS server for one test.
func startServer(t testing.TB) *natstest.Server {
	t.Helper()
	srv, err := natstest.Start(natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// connect opens a connection that the test closes at its end.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := natstest.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// routes is a router with Ready instances, and an observer of its events.
type routes struct {
	t testing.TB
	r *router.Router

	mu     sync.Mutex
	events []router.Event
	notify chan struct{} // receives a token after each event (if free)
}

func newRoutes(t testing.TB) *routes {
	t.Helper()
	rt := &routes{t: t, notify: make(chan struct{}, 1)}
	r, err := router.New(router.Config{}, router.Hooks{Observer: router.ObserverFunc(func(e router.Event) {
		rt.mu.Lock()
		rt.events = append(rt.events, e)
		rt.mu.Unlock()
		select {
		case rt.notify <- struct{}{}:
		default:
		}
	})})
	require.NoError(t, err)
	rt.r = r
	return rt
}

// add routes a Ready instance "i-"+pod of function fn on node.
func (rt *routes) add(fn, pod, node string) *lifecycle.Instance {
	rt.t.Helper()
	now := time.Now()
	inst := lifecycle.NewInstance(lifecycle.Info{ID: DefaultInstanceID(node, pod), FunctionID: fn, PodID: pod, Node: node}, now, rt.r)
	require.NoError(rt.t, rt.r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 4), nil))
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(rt.t, inst.Transition(now, s, "test"))
	}
	return inst
}

// routable returns whether each instance of fn takes requests, by ID.
func (rt *routes) routable(fn string) map[string]bool {
	out := map[string]bool{}
	for _, ri := range rt.r.Routes(fn) {
		out[ri.Instance.ID] = ri.Routable
	}
	return out
}

// waitRoutable waits until the routability of fn's instances is want.
func (rt *routes) waitRoutable(fn string, want map[string]bool) {
	rt.t.Helper()
	require.EventuallyWithT(rt.t, func(c *assert.CollectT) {
		assert.Equal(c, want, rt.routable(fn))
	}, 10*time.Second, time.Millisecond)
}

// watch runs src.Watch against the router, reporting on clk's time, until
// the test ends; the returned channel gets Watch's result.
func (rt *routes) watch(src *Source, clk clock.Clock) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		done <- src.Watch(ctx, func(rep router.HealthReport) { _ = rt.r.ReportHealth(clk.Now(), rep) })
	}()
	rt.t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			rt.t.Error("Watch did not return within 10 s of its context's end")
		}
	})
	return done
}

// runPublisher runs p until the test ends, or until the returned function
// is called (which waits for Run to return).
func runPublisher(t testing.TB, p *Publisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}
