package health

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/router"
)

// A dataplane that subscribes after the verdicts were published gets them
// from the hosts' snapshots, not only future changes.
func TestSourceGetsSnapshotOnSubscribe(t *testing.T) {
	srv := startServer(t)
	hostConn, dpConn := connect(t, srv.URL()), connect(t, srv.URL())
	for _, node := range []string{"node-a", "node-b"} {
		pub, err := NewPublisher(PublisherConfig{Conn: hostConn, Node: node, Heartbeat: time.Hour})
		require.NoError(t, err)
		require.NoError(t, pub.Update(PodStatus{Pod: node + "-1", State: StateDown, Reason: "hung"}))
		runPublisher(t, pub)
		require.Eventually(t, func() bool { return pub.Stats().Heartbeats == 1 }, 10*time.Second, time.Millisecond)
	}
	require.NoError(t, hostConn.Flush()) // all of it reached the server, before the source subscribes
	rt := newRoutes(t)
	for _, p := range []string{"node-a-1", "node-a-2", "node-b-1"} {
		rt.add("f", p, p[:6])
	}
	src, err := NewSource(SourceConfig{Conn: dpConn})
	require.NoError(t, err)
	rt.watch(src, clock.System())
	// Heartbeats come once an hour: only the snapshots can say it.
	rt.waitRoutable("f", map[string]bool{"i-node-a-1": false, "i-node-a-2": true, "i-node-b-1": false})
	assert.Equal(t, uint64(1), src.Stats().Resyncs)
}

// After the server restarts, the source asks for snapshots again, and the
// verdicts published during the outage arrive: by the snapshot, or, when
// the source asked before the host had resubscribed, by the next
// heartbeat.
func TestSourceResyncsAfterReconnect(t *testing.T) {
	srv := startServer(t)
	hostConn, dpConn := connect(t, srv.URL()), connect(t, srv.URL())
	pub, err := NewPublisher(PublisherConfig{Conn: hostConn, Node: "node-a", Heartbeat: 100 * time.Millisecond})
	require.NoError(t, err)
	runPublisher(t, pub)
	rt := newRoutes(t)
	rt.add("f", "p1", "node-a")
	rt.add("f", "p2", "node-a")
	src, err := NewSource(SourceConfig{Conn: dpConn})
	require.NoError(t, err)
	rt.watch(src, clock.System())
	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateDown}))
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true})

	reconnected := dpConn.StatusChanged(nats.CONNECTED)
	defer dpConn.RemoveStatusListener(reconnected)
	srv.Shutdown()
	// Published while no server runs: the client buffers it, and sends it
	// when it reconnects, perhaps before the source has resubscribed.
	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateUp}, PodStatus{Pod: "p2", State: StateDown}))
	require.NoError(t, srv.Restart())
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect")
	}
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": false})
	require.Eventually(t, func() bool { return src.Stats().Resyncs >= 2 }, 10*time.Second, time.Millisecond)
}

// A change whose number skips one makes the source ask that host for a
// snapshot, which brings the lost change; changes and snapshots older
// than what was applied are ignored.
func TestSourceRepairsGapsAndIgnoresOldMessages(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	rt := newRoutes(t)
	for _, p := range []string{"p1", "p2", "p3"} {
		rt.add("f", p, "n1")
	}
	// A host that answers sync requests with the snapshot the test sets.
	type snapshot struct {
		seq  uint64
		pods []PodStatus
	}
	answers := make(chan snapshot, 1)
	syncs := make(chan string, 8)
	sub, err := nc.Subscribe("faas.health.sync.n1", func(m *nats.Msg) {
		a := <-answers
		b, _ := Encode(&Message{Version: WireVersion, Kind: KindSnapshot, Node: "n1", Epoch: "E1", Seq: a.seq, Pods: a.pods})
		_ = m.Respond(b)
		syncs <- m.Subject
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	synced := func() {
		t.Helper()
		select {
		case <-syncs:
		case <-time.After(10 * time.Second):
			t.Fatal("no sync request")
		}
	}
	src, err := NewSource(SourceConfig{Conn: nc})
	require.NoError(t, err)
	rt.watch(src, clock.System())
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)

	subj := "faas.health.node.n1"
	// The first change of an epoch the source did not know: a sync.
	answers <- snapshot{1, []PodStatus{{Pod: "p1", State: StateDown}}}
	rawPublish(t, nc, subj, Message{Kind: KindChange, Node: "n1", Seq: 1, Pods: []PodStatus{{Pod: "p1", State: StateDown}}})
	synced()
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true, "i-p3": true})
	// Change 2 (p2 down) was lost; change 3 arrives: a gap, a sync, and
	// the snapshot brings p2.
	answers <- snapshot{3, []PodStatus{{Pod: "p1", State: StateDown}, {Pod: "p2", State: StateDown}, {Pod: "p3", State: StateDown}}}
	rawPublish(t, nc, subj, Message{Kind: KindChange, Node: "n1", Seq: 3, Pods: []PodStatus{{Pod: "p3", State: StateDown}}})
	synced()
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": false, "i-p3": false})
	assert.Equal(t, uint64(3), src.Stats().Resyncs)
	// A replayed change and a heartbeat older than change 3 are ignored;
	// the heartbeat after them is applied.
	rawPublish(t, nc, subj, Message{Kind: KindChange, Node: "n1", Seq: 2, Pods: []PodStatus{{Pod: "p1", State: StateUp}}})
	rawPublish(t, nc, subj, Message{Kind: KindHeartbeat, Node: "n1", Seq: 1})
	rawPublish(t, nc, subj, Message{Kind: KindHeartbeat, Node: "n1", Seq: 3, Pods: []PodStatus{{Pod: "p3", State: StateDown}}})
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": true, "i-p3": false})
	// A new epoch (the host restarted): its heartbeat replaces everything.
	rawPublish(t, nc, subj, Message{Kind: KindHeartbeat, Node: "n1", Epoch: "E2", StartedUnixNano: 10})
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": true, "i-p3": true})
	// A change of the earlier run, delivered late, is ignored; the next
	// heartbeat proves it was seen first.
	received := src.Stats().Received
	rawPublish(t, nc, subj, Message{Kind: KindChange, Node: "n1", Epoch: "E1", Seq: 9, Pods: []PodStatus{{Pod: "p1", State: StateDown}}})
	rawPublish(t, nc, subj, Message{Kind: KindHeartbeat, Node: "n1", Epoch: "E2", StartedUnixNano: 10, Pods: []PodStatus{{Pod: "p2", State: StateDown}}})
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": false, "i-p3": true})
	assert.Equal(t, received+2, src.Stats().Received)
	assert.Equal(t, uint64(3), src.Stats().Resyncs)
}

// A host speaks for itself only, and garbage changes nothing.
func TestSourceRefusesImpersonationAndGarbage(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	rt := newRoutes(t)
	rt.add("f", "p1", "n1")
	src, err := NewSource(SourceConfig{Conn: nc})
	require.NoError(t, err)
	rt.watch(src, clock.System())
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)

	rawPublish(t, nc, "faas.health.node.n2", Message{Kind: KindChange, Node: "n1", Seq: 1, Pods: []PodStatus{{Pod: "p1", State: StateDown}}})
	require.NoError(t, nc.Publish("faas.health.node.n1", []byte(`{"v":1,"kind":"change","node":"n1","epoch":"e","seq":1,"pods":[{"pod":"p1","state":"dead"}]}`)))
	require.NoError(t, nc.Publish("faas.health.node.n1", []byte("down!")))
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool { return src.Stats().Malformed == 3 }, 10*time.Second, time.Millisecond, "%+v", src.Stats())
	assert.Equal(t, map[string]bool{"i-p1": true}, rt.routable("f"))
	assert.Equal(t, uint64(0), src.Stats().Received)
	assert.Empty(t, src.Hosts())
}

func TestSourceOneWatchAtATime(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	src, err := NewSource(SourceConfig{Conn: nc})
	require.NoError(t, err)
	rt := newRoutes(t)
	rt.watch(src, clock.System())
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)
	assert.ErrorIs(t, src.Watch(t.Context(), func(router.HealthReport) {}), ErrWatching)
}

// When the connection closes, Watch undoes its "down" verdicts before it
// returns the error: nothing keeps them true any more.
func TestSourceWatchFailureUndoesVerdicts(t *testing.T) {
	srv := startServer(t)
	hostConn := connect(t, srv.URL())
	dpConn, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	rt := newRoutes(t)
	rt.add("f", "p1", "n1")
	rt.add("f", "p2", "n1")
	src, err := NewSource(SourceConfig{Conn: dpConn})
	require.NoError(t, err)
	done := rt.watch(src, clock.System())
	pub, err := NewPublisher(PublisherConfig{Conn: hostConn, Node: "n1", Heartbeat: time.Hour})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateDown}))
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true})

	dpConn.Close()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return")
	}
	assert.Equal(t, map[string]bool{"i-p1": true, "i-p2": true}, rt.routable("f"))
	assert.Empty(t, src.Hosts())
}
