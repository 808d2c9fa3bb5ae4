package hostagent

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/natstest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// No goroutine of the servers, connections, agents, dataplanes or
// providers outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func startServer(t testing.TB) *natstest.Server {
	t.Helper()
	srv, err := natstest.Start(natstest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := natstest.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// run runs a until the test ends or stop is called (which waits for Run).
func run(t testing.TB, a *Agent) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10 s of its context's end")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// nextMessage returns the next health message on sub, decoded.
func nextMessage(t testing.TB, sub *nats.Subscription) health.Message {
	t.Helper()
	m, err := sub.NextMsg(10 * time.Second)
	require.NoError(t, err)
	msg, err := health.Decode(m.Data)
	require.NoError(t, err)
	return msg
}

// fakePods is a lister and watcher whose pods and events the test sets.
type fakePods struct {
	mu      sync.Mutex
	pods    []warmpool.Pod
	events  chan warmpool.PodEvent
	watches int
	lists   int
}

func newFakePods(pods ...warmpool.Pod) *fakePods {
	return &fakePods{pods: pods, events: make(chan warmpool.PodEvent, 16)}
}

func (f *fakePods) List(context.Context) ([]warmpool.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return append([]warmpool.Pod(nil), f.pods...), nil
}

func (f *fakePods) Watch(ctx context.Context) (<-chan warmpool.PodEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watches++
	return f.events, nil
}

func (f *fakePods) set(pods ...warmpool.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods = pods
}

// breakWatch closes the watch channel, as a provider does to a watcher
// that fell behind, and gives the next Watch a new one.
func (f *fakePods) breakWatch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.events)
	f.events = make(chan warmpool.PodEvent, 16)
}

func (f *fakePods) counts() (lists, watches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists, f.watches
}

// fakePinger answers pings per control address as the test says.
type fakePinger struct {
	mu      sync.Mutex
	answers map[string]pingAnswer
	calls   map[string]int
}

type pingAnswer struct {
	resp lifecycle.PingResponse
	err  error
}

func newFakePinger() *fakePinger {
	return &fakePinger{answers: map[string]pingAnswer{}, calls: map[string]int{}}
}

func (p *fakePinger) set(addr string, resp lifecycle.PingResponse, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[addr] = pingAnswer{resp, err}
}

func (p *fakePinger) Ping(_ context.Context, ctl lifecycle.Control) (lifecycle.PingResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[ctl.Addr]++
	a, ok := p.answers[ctl.Addr]
	if !ok {
		return lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNoFunction, "no function loaded")
	}
	return a.resp, a.err
}

func (p *fakePinger) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[addr]
}

func pod(id, node string) warmpool.Pod {
	return warmpool.Pod{ID: id, Node: node, Addr: "127.0.0.1:1", Control: lifecycle.Control{Addr: "ctl-" + id, Token: token}}
}
