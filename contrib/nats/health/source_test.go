package health

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

func TestNewSourceValidates(t *testing.T) {
	nc := &nats.Conn{}
	for _, tc := range []struct {
		name string
		cfg  SourceConfig
	}{
		{"no conn", SourceConfig{}},
		{"negative staleness", SourceConfig{Conn: nc, StaleAfter: -time.Second}},
		{"negative buffer", SourceConfig{Conn: nc, Buffer: -1}},
		{"bad prefix", SourceConfig{Conn: nc, Prefix: "a..b"}},
	} {
		_, err := NewSource(tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, tc.name)
	}
}

// rawPublish sends m on subject as a host would (or would not).
func rawPublish(t *testing.T, nc *nats.Conn, subject string, m Message) {
	t.Helper()
	m.Version = WireVersion
	if m.Epoch == "" {
		m.Epoch = "E1"
	}
	b, err := Encode(&m)
	require.NoError(t, err)
	require.NoError(t, nc.Publish(subject, b))
	require.NoError(t, nc.Flush())
}

func TestSourcePushDownAndUp(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	rt := newRoutes(t)
	rt.add("f", "p1", "node-a")
	rt.add("f", "p2", "node-a")
	src, err := NewSource(SourceConfig{Conn: nc})
	require.NoError(t, err)
	pub, err := NewPublisher(PublisherConfig{Conn: nc, Node: "node-a", Heartbeat: time.Hour})
	require.NoError(t, err)
	rt.watch(src, clock.System())
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, pub.Update(PodStatus{Pod: "p1", Function: "f", State: StateDown, Reason: "ping timed out"}))
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true})
	rt.mu.Lock()
	last := rt.events[len(rt.events)-1]
	rt.mu.Unlock()
	assert.Equal(t, router.RouteEjected, last.Kind)
	assert.Equal(t, router.CauseHealthPush, last.Cause)
	assert.Contains(t, last.Reason, "host node-a: ping timed out")
	assert.Equal(t, []HostStatus{{Node: "node-a", LastSeen: src.Hosts()[0].LastSeen, NotUp: 1}}, src.Hosts())

	require.NoError(t, pub.Update(PodStatus{Pod: "p1", Function: "f", State: StateUp}))
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": true})

	// Exited removes the instance (and asks for a replacement).
	require.NoError(t, pub.Update(PodStatus{Pod: "p2", State: StateExited, Reason: "function process exited"}))
	rt.waitRoutable("f", map[string]bool{"i-p1": true})
}

// An "up" lets an instance back only when no pull check holds it out: the
// router keeps the two sides' verdicts apart.
func TestSourceUpObeysPullChecks(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	rt := newRoutes(t)
	for _, p := range []string{"p1", "p2", "p3"} {
		rt.add("f", p, "node-a")
	}
	pullFails := map[string]bool{"i-p1": true}
	clk := faastest.NewClock(time.Time{})
	h, err := router.NewHealthMonitor(rt.r, router.HealthConfig{Clock: clk, Checker: router.CheckerFunc(func(_ context.Context, inst *lifecycle.Instance) error {
		if pullFails[inst.ID] {
			return errors.New("connection refused")
		}
		return nil
	})})
	require.NoError(t, err)
	defer h.Close()
	src, err := NewSource(SourceConfig{Conn: nc})
	require.NoError(t, err)
	pub, err := NewPublisher(PublisherConfig{Conn: nc, Node: "node-a", Heartbeat: time.Hour})
	require.NoError(t, err)
	rt.watch(src, clk)
	require.Eventually(t, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateDown}))
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true, "i-p3": true})
	for i := 1; i <= 4; i++ { // readiness: every 2 s, out after 3 failures
		h.RunOnce(t.Context(), clk.Now().Add(time.Duration(2*i)*time.Second))
	}
	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateUp}))
	require.Eventually(t, func() bool { return src.Stats().Received >= 2 }, 10*time.Second, time.Millisecond)
	// The push side's "up" is applied, but the pull side holds i-p1 out.
	require.NoError(t, pub.Heartbeat()) // a later message, so the up was applied before it
	require.Eventually(t, func() bool { return src.Stats().Received >= 3 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, map[string]bool{"i-p1": false, "i-p2": true, "i-p3": true}, rt.routable("f"))

	pullFails["i-p1"] = false
	h.RunOnce(t.Context(), clk.Now().Add(10*time.Second))
	assert.Equal(t, map[string]bool{"i-p1": true, "i-p2": true, "i-p3": true}, rt.routable("f"))
}
