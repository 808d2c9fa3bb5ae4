package health

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/faastest"
)

func TestNewPublisherValidates(t *testing.T) {
	nc := &nats.Conn{} // never used: every case fails before
	for _, tc := range []struct {
		name string
		cfg  PublisherConfig
	}{
		{"no conn", PublisherConfig{Node: "n"}},
		{"no node", PublisherConfig{Conn: nc}},
		{"bad node", PublisherConfig{Conn: nc, Node: "a b"}},
		{"negative heartbeat", PublisherConfig{Conn: nc, Node: "n", Heartbeat: -time.Second}},
		{"bad prefix", PublisherConfig{Conn: nc, Node: "n", Prefix: "a.*"}},
	} {
		_, err := NewPublisher(tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, tc.name)
	}
}

// next returns the next message on sub, decoded.
func next(t *testing.T, sub *nats.Subscription) Message {
	t.Helper()
	m, err := sub.NextMsg(10 * time.Second)
	require.NoError(t, err)
	msg, err := Decode(m.Data)
	require.NoError(t, err)
	return msg
}

func TestPublisherSendsChangesOnly(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	clk := faastest.NewClock(time.Time{})
	p, err := NewPublisher(PublisherConfig{Conn: nc, Node: "node.a", Clock: clk, Heartbeat: time.Minute})
	require.NoError(t, err)
	sub, err := nc.SubscribeSync("faas.health.node.node%2Ea")
	require.NoError(t, err)

	// Up for a pod never seen is no change; down is.
	require.NoError(t, p.Update(PodStatus{Pod: "p1", State: StateUp}, PodStatus{Pod: "p2", Function: "f", State: StateDown, Reason: "timeout"}))
	m := next(t, sub)
	assert.Equal(t, KindChange, m.Kind)
	assert.Equal(t, "node.a", m.Node)
	assert.Equal(t, uint64(1), m.Seq)
	assert.Equal(t, int64(60000), m.HeartbeatMillis)
	assert.Equal(t, clk.Now().UnixNano(), m.SentUnixNano)
	assert.Equal(t, []PodStatus{{Pod: "p2", Function: "f", State: StateDown, Reason: "timeout"}}, m.Pods)

	// The same verdict again sends nothing; the next message is the
	// next change, numbered 2.
	require.NoError(t, p.Update(PodStatus{Pod: "p2", Function: "f", State: StateDown, Reason: "timeout again"}))
	require.NoError(t, p.Update(PodStatus{Pod: "p1", State: StateExited}, PodStatus{Pod: "p2", State: StateUp}))
	m = next(t, sub)
	assert.Equal(t, uint64(2), m.Seq)
	assert.Equal(t, []PodStatus{{Pod: "p1", State: StateExited}, {Pod: "p2", State: StateUp}}, m.Pods)

	// A heartbeat lists the pods not up, with the latest change's number.
	require.NoError(t, p.Update(PodStatus{Pod: "p3", State: StateReassigned, Function: "bad id!"}))
	_ = next(t, sub)
	require.NoError(t, p.Heartbeat())
	m = next(t, sub)
	assert.Equal(t, KindHeartbeat, m.Kind)
	assert.Equal(t, uint64(3), m.Seq)
	assert.Equal(t, []PodStatus{{Pod: "p1", State: StateExited}, {Pod: "p3", State: StateReassigned}}, m.Pods, "an invalid function ID is dropped")

	p.Forget("p1", "p3")
	require.NoError(t, p.Heartbeat())
	m = next(t, sub)
	assert.Empty(t, m.Pods)
	assert.Equal(t, []PodStatus{{Pod: "p2", State: StateUp}}, p.Pods())

	assert.Error(t, p.Update(PodStatus{Pod: "", State: StateDown}))
	assert.Error(t, p.Update(PodStatus{Pod: "p", State: "sleepy"}))
	assert.Equal(t, PublisherStats{Changes: 3, Heartbeats: 2}, p.Stats())
}

func TestPublisherRunBeatsAndAnswersSync(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	clk := faastest.NewClock(time.Time{})
	p, err := NewPublisher(PublisherConfig{Conn: nc, Node: "n1", Clock: clk, Heartbeat: time.Second})
	require.NoError(t, err)
	require.NoError(t, p.Update(PodStatus{Pod: "p1", State: StateDown}))
	sub, err := nc.SubscribeSync("faas.health.node.n1")
	require.NoError(t, err)
	stop := runPublisher(t, p)

	m := next(t, sub)
	assert.Equal(t, KindHeartbeat, m.Kind, "a heartbeat at once")
	require.NoError(t, clk.BlockUntil(t.Context(), 1))
	clk.Advance(time.Second)
	m = next(t, sub)
	assert.Equal(t, KindHeartbeat, m.Kind, "and one every interval")
	assert.Equal(t, []PodStatus{{Pod: "p1", State: StateDown}}, m.Pods)

	for _, subj := range []string{"faas.health.sync", "faas.health.sync.n1"} {
		reply, err := nc.Request(subj, nil, 10*time.Second)
		require.NoError(t, err, subj)
		snap, err := Decode(reply.Data)
		require.NoError(t, err)
		assert.Equal(t, KindSnapshot, snap.Kind)
		assert.Equal(t, uint64(1), snap.Seq)
		assert.Equal(t, []PodStatus{{Pod: "p1", State: StateDown}}, snap.Pods)
	}
	_, err = nc.Request("faas.health.sync.n2", nil, 50*time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrNoResponders, "another node's sync subject is not answered")
	stop()
	st := p.Stats()
	assert.Equal(t, uint64(2), st.Snapshots)
	assert.GreaterOrEqual(t, st.Heartbeats, uint64(2))
}

// Run ends with an error when the connection closes.
func TestPublisherRunEndsWhenConnectionCloses(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	p, err := NewPublisher(PublisherConfig{Conn: nc, Node: "n1"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.Run(t.Context()) }()
	require.Eventually(t, func() bool { return p.Stats().Heartbeats > 0 }, 10*time.Second, time.Millisecond)
	nc.Close()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the connection closed")
	}
}
