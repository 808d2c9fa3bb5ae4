package hostagent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

func TestNewValidates(t *testing.T) {
	nc := &nats.Conn{}
	pods := newFakePods()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no pods", Config{Node: "n", Conn: nc}},
		{"no conn", Config{Node: "n", Pods: pods}},
		{"no node", Config{Conn: nc, Pods: pods}},
		{"negative interval", Config{Node: "n", Conn: nc, Pods: pods, Interval: -1}},
		{"negative threshold", Config{Node: "n", Conn: nc, Pods: pods, FailureThreshold: -1}},
	} {
		_, err := New(tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, tc.name)
	}
	a, err := New(Config{Node: "n", Conn: nc, Pods: pods})
	require.NoError(t, err)
	assert.Equal(t, DefaultInterval, a.cfg.Interval)
	assert.Equal(t, DefaultInterval, a.cfg.PingTimeout)
	assert.Equal(t, DefaultFailureThreshold, a.cfg.FailureThreshold)
	assert.IsType(t, &lifecycle.Client{}, a.cfg.Pinger)
}

// agentFixture is an agent on node n1 with fake pods and pings, on a fake
// clock, publishing on a real server; sub receives what it publishes.
type agentFixture struct {
	t     *testing.T
	clk   *faastest.Clock
	pods  *fakePods
	ping  *fakePinger
	agent *Agent
	sub   *nats.Subscription
	stop  func() error
}

func newAgentFixture(t *testing.T, pods ...warmpool.Pod) *agentFixture {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	fx := &agentFixture{t: t, clk: faastest.NewClock(time.Time{}), pods: newFakePods(pods...), ping: newFakePinger()}
	var err error
	fx.agent, err = New(Config{Node: "n1", Pods: fx.pods, Conn: nc, Pinger: fx.ping, Clock: fx.clk, Heartbeat: time.Hour, Resync: time.Hour})
	require.NoError(t, err)
	fx.sub, err = nc.SubscribeSync("faas.health.node.n1")
	require.NoError(t, err)
	fx.stop = run(t, fx.agent)
	assert.Equal(t, health.KindHeartbeat, nextMessage(t, fx.sub).Kind, "a heartbeat at start")
	// Rounds, listings and heartbeats each wait on the clock.
	require.NoError(t, fx.clk.BlockUntil(t.Context(), 3))
	return fx
}

// round advances to the next round and waits until addr was pinged.
func (fx *agentFixture) round(addr string) {
	fx.t.Helper()
	n := fx.ping.count(addr)
	fx.clk.Advance(DefaultInterval)
	require.Eventually(fx.t, func() bool { return fx.ping.count(addr) > n }, 10*time.Second, time.Millisecond)
}

// status returns the agent's view of pod id.
func (fx *agentFixture) status(id string) PodStatus {
	for _, p := range fx.agent.Pods() {
		if p.Pod.ID == id {
			return p
		}
	}
	return PodStatus{}
}

func TestAgentPublishesVerdictChanges(t *testing.T) {
	fx := newAgentFixture(t, pod("p1", "n1"), pod("p2", "n2"), pod("warm", "n1"))
	ready := lifecycle.PingResponse{FunctionID: "f", State: lifecycle.AgentReady}
	fx.ping.set("ctl-p1", ready, nil)

	fx.round("ctl-p1")
	require.Eventually(t, func() bool { return fx.status("p1").Verdict == health.StateUp }, 10*time.Second, time.Millisecond)
	fx.ping.set("ctl-p1", lifecycle.PingResponse{}, errors.New("context deadline exceeded"))
	fx.round("ctl-p1")
	require.Eventually(t, func() bool { return fx.status("p1").Fails == 1 }, 10*time.Second, time.Millisecond)
	fx.round("ctl-p1")
	m := nextMessage(t, fx.sub)
	assert.Equal(t, health.KindChange, m.Kind)
	require.Len(t, m.Pods, 1)
	assert.Equal(t, health.PodStatus{Pod: "p1", Function: "f", State: health.StateDown, Reason: "2 pings failed: context deadline exceeded"}, m.Pods[0])

	fx.ping.set("ctl-p1", ready, nil)
	fx.round("ctl-p1")
	m = nextMessage(t, fx.sub)
	assert.Equal(t, []health.PodStatus{{Pod: "p1", Function: "f", State: health.StateUp, Reason: "ping ok"}}, m.Pods)

	fx.ping.set("ctl-p1", lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeFunctionExited, "exit status 1"))
	fx.round("ctl-p1")
	m = nextMessage(t, fx.sub)
	assert.Equal(t, health.StateExited, m.Pods[0].State)
	// An exited pod is not pinged again; the warm pod is, with no verdict.
	calls := fx.ping.count("ctl-p1")
	fx.round("ctl-warm")
	fx.round("ctl-warm")
	assert.Equal(t, calls, fx.ping.count("ctl-p1"))
	assert.Equal(t, health.State(""), fx.status("warm").Verdict)
	assert.Zero(t, fx.ping.count("ctl-p2"), "another node's pod is not checked")
	assert.Equal(t, []string{"p1", "warm"}, ids(fx.agent.Pods()))
	require.ErrorIs(t, fx.stop(), context.Canceled, "Run returns ctx.Err()")
	assert.Equal(t, uint64(3), fx.agent.Publisher().Stats().Changes)
}

func ids(pods []PodStatus) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Pod.ID)
	}
	return out
}

// Pods come and go by the watcher's events and by listings; a pod that
// leaves the node while it served a function is reported exited.
func TestAgentFollowsPods(t *testing.T) {
	fx := newAgentFixture(t, pod("p1", "n1"))
	fx.ping.set("ctl-p1", lifecycle.PingResponse{FunctionID: "f", State: lifecycle.AgentReady}, nil)
	fx.round("ctl-p1")
	require.Eventually(t, func() bool { return fx.status("p1").Verdict == health.StateUp }, 10*time.Second, time.Millisecond)

	fx.pods.events <- warmpool.PodEvent{Type: warmpool.PodAdded, Pod: pod("p2", "n1")}
	fx.pods.events <- warmpool.PodEvent{Type: warmpool.PodAdded, Pod: pod("x", "n2")}
	fx.pods.events <- warmpool.PodEvent{Type: warmpool.PodDeleted, Pod: pod("p1", "n1")}
	m := nextMessage(t, fx.sub)
	assert.Equal(t, []health.PodStatus{{Pod: "p1", Function: "f", State: health.StateExited, Reason: "pod deleted"}}, m.Pods)
	require.Eventually(t, func() bool { return len(fx.agent.Pods()) == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{"p2"}, ids(fx.agent.Pods()))
	assert.Empty(t, fx.agent.Publisher().Pods(), "forgotten")

	// The watcher falls behind: the agent lists and watches again.
	fx.pods.set(pod("p2", "n1"), pod("p3", "n1"))
	fx.pods.breakWatch()
	require.Eventually(t, func() bool { return len(fx.agent.Pods()) == 2 }, 10*time.Second, time.Millisecond)
	lists, watches := fx.pods.counts()
	assert.Equal(t, 2, lists)
	assert.Equal(t, 2, watches)
	// And every Resync it lists anyway.
	fx.pods.set(pod("p3", "n1"))
	fx.clk.Advance(time.Hour)
	require.Eventually(t, func() bool { return len(fx.agent.Pods()) == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{"p3"}, ids(fx.agent.Pods()))
}

// Run ends when the connection closes.
func TestAgentRunEndsWhenConnectionCloses(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	a, err := New(Config{Node: "n1", Pods: newFakePods(), Conn: nc, Pinger: newFakePinger()})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(t.Context()) }()
	require.Eventually(t, func() bool { return a.Publisher().Stats().Heartbeats > 0 }, 10*time.Second, time.Millisecond)
	nc.Close()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}
