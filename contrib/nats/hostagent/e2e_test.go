package hostagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/contrib/nats/internal/testenv"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// built holds the binaries of the end-to-end tests, built once.
var built struct {
	once  sync.Once
	dir   string
	agent string
	hello code.Ref
	err   error
}

func binaries(t testing.TB) (agent string, hello code.Ref, dir string) {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "hostagent-e2e-*")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		bins, err := testenv.Build(context.Background(), filepath.Join(dir, "bin"), testenv.AgentPackage, testenv.HelloPackage)
		if err != nil {
			built.err = err
			return
		}
		built.agent = bins[0]
		built.hello, built.err = testenv.Pack(bins[1], dir, code.Manifest{})
	})
	require.NoError(t, built.err)
	return built.agent, built.hello, built.dir
}

func testLogger() *slog.Logger {
	if os.Getenv("FAAS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// faultyPinger pings for real, but fails the pods the test says, as a hung
// agent would.
type faultyPinger struct {
	real Pinger
	mu   sync.Mutex
	fail map[string]bool // control addresses
}

func (p *faultyPinger) Ping(ctx context.Context, ctl lifecycle.Control) (lifecycle.PingResponse, error) {
	p.mu.Lock()
	fail := p.fail[ctl.Addr]
	p.mu.Unlock()
	if fail {
		return lifecycle.PingResponse{}, errors.New("ping: context deadline exceeded (injected)")
	}
	return p.real.Ping(ctx, ctl)
}

func (p *faultyPinger) set(addr string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail[addr] = fail
}

// routeLog records the dataplane's route events with their wall time.
type routeLog struct {
	faas.NopObserver
	mu     sync.Mutex
	events []timedEvent
}

type timedEvent struct {
	at time.Time
	e  router.Event
}

func (l *routeLog) ObserveRoute(e router.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, timedEvent{time.Now(), e})
}

// find returns the first event for instance id of kind and cause, after
// index from; -1 when there is none.
func (l *routeLog) find(from int, id string, kind router.EventKind, cause router.Cause) (int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; i < len(l.events); i++ {
		if e := l.events[i].e; e.Instance.ID == id && e.Kind == kind && e.Cause == cause {
			return i, l.events[i].at
		}
	}
	return -1, time.Time{}
}

func (l *routeLog) reason(i int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events[i].e.Reason
}

func (l *routeLog) summary() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, te := range l.events {
		out = append(out, fmt.Sprintf("%s/%s@%s", te.e.Kind, te.e.Cause, te.e.Instance.ID))
	}
	return out
}

func (p *published) all() []health.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.changes)
}

// published collects the changes the host agents publish, with their
// publication times.
type published struct {
	mu      sync.Mutex
	changes []health.Message
}

func (p *published) last(pod string, state health.State) (health.Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range slices.Backward(p.changes) {
		for _, ps := range m.Pods {
			if ps.Pod == pod && ps.State == state {
				return m, true
			}
		}
	}
	return health.Message{}, false
}

// The host agents of two nodes check real agents and publish through a
// real NATS server; a real Dataplane subscribed with a Source ejects,
// readmits and replaces its instances on their word, and falls back to
// its own pull checks when a host agent stops.
func TestHostAgentsAndDataplane(t *testing.T) {
	agentBin, hello, buildDir := binaries(t)
	ctx := context.Background()
	srv := startServer(t)
	dpConn, hostConn := connect(t, srv.URL()), connect(t, srv.URL())
	pub := &published{}
	sub, err := dpConn.Subscribe("faas.health.node.*", func(m *nats.Msg) {
		if msg, err := health.Decode(m.Data); err == nil && msg.Kind == health.KindChange {
			pub.mu.Lock()
			pub.changes = append(pub.changes, msg)
			pub.mu.Unlock()
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a", "node-b"}})
	require.NoError(t, err)
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(t, err)
	defer origin.Close()
	src, err := health.NewSource(health.SourceConfig{Conn: dpConn})
	require.NoError(t, err)
	log := &routeLog{}
	dp, err := faas.New(faas.Config{
		Pods: pods, Code: origin, Observer: log,
		Pool:   warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 4}}, ProbeInterval: -1},
		Health: router.HealthConfig{Source: src}, // pull checks as by default: every 2 s, out after 3 failures
	})
	require.NoError(t, err)
	require.NoError(t, dp.Start(ctx))
	defer dp.Close()

	pinger := &faultyPinger{real: &lifecycle.Client{}, fail: map[string]bool{}}
	stops := map[string]func() error{}
	var agents []*Agent
	for _, node := range []string{"node-a", "node-b"} {
		a, err := New(Config{Node: node, Pods: pods, Conn: hostConn, Pinger: pinger,
			Interval: 50 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Logger: testLogger()})
		require.NoError(t, err)
		stops[node] = run(t, a)
		agents = append(agents, a)
	}

	require.NoError(t, dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: hello, Concurrency: 4, MinInstances: 2}))
	var insts []*lifecycle.Instance
	require.Eventually(t, func() bool {
		insts = insts[:0]
		for _, ri := range dp.Routes("hello") {
			if ri.Routable {
				insts = append(insts, ri.Instance)
			}
		}
		return len(insts) == 2
	}, 30*time.Second, 10*time.Millisecond)
	victim, other := insts[0], insts[1]
	t.Logf("instances: %s on %s, %s on %s", victim.ID, victim.Node, other.ID, other.Node)
	routable := func(id string) bool {
		for _, ri := range dp.Routes("hello") {
			if ri.Instance.ID == id {
				return ri.Routable
			}
		}
		return false
	}
	latency := func(from int, pod string, state health.State, kind router.EventKind) (int, time.Duration) {
		t.Helper()
		var i int
		var at time.Time
		require.Eventually(t, func() bool {
			i, at = log.find(from, "i-"+pod, kind, router.CauseHealthPush)
			return i >= 0
		}, 10*time.Second, time.Millisecond, "no %s event for %s; events %v; changes %+v", kind, pod, log.summary(), pub.all())
		m, ok := pub.last(pod, state)
		require.True(t, ok)
		return i + 1, at.Sub(time.Unix(0, m.SentUnixNano))
	}

	verdict := func(pod string) health.State {
		for _, a := range agents {
			for _, p := range a.Pods() {
				if p.Pod.ID == pod {
					return p.Verdict
				}
			}
		}
		return ""
	}
	require.Eventually(t, func() bool {
		return verdict(victim.PodID) == health.StateUp && verdict(other.PodID) == health.StateUp
	}, 10*time.Second, time.Millisecond, "the host agents saw both instances ready")
	// 1. The victim's agent hangs (as its host agent sees it): out of the
	// routes on the host agent's word, while the other instance serves.
	injected := time.Now()
	pinger.set(victim.Control.Addr, true)
	mark, down := latency(0, victim.PodID, health.StateDown, router.RouteEjected)
	downMsg, _ := pub.last(victim.PodID, health.StateDown)
	detected := time.Unix(0, downMsg.SentUnixNano).Sub(injected)
	assert.False(t, routable(victim.ID))
	for i := range 20 {
		resp, err := dp.Invoke(ctx, &faas.Request{FunctionID: "hello", Body: fmt.Appendf(nil, "req %d", i)})
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	}
	// 2. It answers again: back in the routes.
	pinger.set(victim.Control.Addr, false)
	mark, up := latency(mark, victim.PodID, health.StateUp, router.RouteReadmitted)
	assert.True(t, routable(victim.ID))
	t.Logf("hang to publication %v (2 failed pings at a 50 ms interval); publication to route change: down %v, up %v", detected, down, up)

	// 3. Hung again, and then its host agent dies: its heartbeats stop,
	// the Source undoes the verdict after 3 intervals (300 ms), and the
	// dataplane's own pull checks, which pass, keep the victim routed.
	pinger.set(victim.Control.Addr, true)
	mark, _ = latency(mark, victim.PodID, health.StateDown, router.RouteEjected)
	require.ErrorIs(t, stops[victim.Node](), context.Canceled)
	require.Eventually(t, func() bool { return routable(victim.ID) }, 10*time.Second, 5*time.Millisecond)
	assert.GreaterOrEqual(t, src.Stats().StaleHosts, uint64(1))
	i, _ := log.find(mark, victim.ID, router.RouteReadmitted, router.CauseHealthPush)
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, log.reason(i), "stale: host "+victim.Node+" silent")

	// 4. The other instance's function process dies: its host agent
	// reports it exited, and the instance leaves the routes for good.
	if other.Node == victim.Node {
		t.Logf("both instances on %s; its host agent is stopped, restarting it", other.Node)
		a, err := New(Config{Node: other.Node, Pods: pods, Conn: hostConn, Pinger: &lifecycle.Client{}, Interval: 50 * time.Millisecond, Heartbeat: 100 * time.Millisecond})
		require.NoError(t, err)
		run(t, a)
	}
	pr, err := (&lifecycle.Client{}).Ping(ctx, other.Control)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pr.PID, syscall.SIGKILL))
	require.Eventually(t, func() bool { _, ok := pub.last(other.PodID, health.StateExited); return ok }, 10*time.Second, 5*time.Millisecond,
		"the host agent reports the exit")
	require.Eventually(t, func() bool {
		for _, ri := range dp.Routes("hello") {
			if ri.Instance.ID == other.ID {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}
