package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

func TestStaleAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured time.Duration
		interval   time.Duration
		want       time.Duration
	}{
		{"configured wins", 5 * time.Second, 100 * time.Millisecond, 5 * time.Second},
		{"three of the host's intervals", 0, 200 * time.Millisecond, 600 * time.Millisecond},
		{"three default intervals before the host said", 0, 0, 3 * time.Second},
	} {
		s := &Source{cfg: SourceConfig{StaleAfter: tc.configured}}
		assert.Equal(t, tc.want, s.staleAfter(&host{interval: tc.interval}), tc.name)
	}
}

// received waits until the source has taken n messages in all.
func received(t *testing.T, src *Source, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return src.Stats().Received >= n }, 10*time.Second, time.Millisecond)
}

// A host that keeps beating keeps its verdicts; one that falls silent has
// them undone, and gets them back when it speaks again.
func TestSourceStaleHostVerdictsUndone(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv.URL())
	rt := newRoutes(t)
	rt.add("f", "p1", "node-a")
	rt.add("f", "p2", "node-a")
	clk := faastest.NewClock(time.Time{})
	src, err := NewSource(SourceConfig{Conn: nc, Clock: clk})
	require.NoError(t, err)
	rt.watch(src, clk)
	require.NoError(t, clk.BlockUntil(t.Context(), 1)) // the staleness ticker
	pub, err := NewPublisher(PublisherConfig{Conn: nc, Node: "node-a", Heartbeat: time.Second, Clock: faastest.NewClock(time.Time{})})
	require.NoError(t, err)

	require.NoError(t, pub.Update(PodStatus{Pod: "p1", State: StateDown}))
	received(t, src, 1)
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true})
	for i := range 5 { // 5 s of heartbeats, each within 3 intervals of the last
		clk.Advance(time.Second)
		require.NoError(t, pub.Heartbeat())
		received(t, src, uint64(2+i))
	}
	assert.Equal(t, map[string]bool{"i-p1": false, "i-p2": true}, rt.routable("f"))
	assert.Zero(t, src.Stats().StaleHosts)

	clk.Advance(3*time.Second + time.Millisecond) // silent
	rt.waitRoutable("f", map[string]bool{"i-p1": true, "i-p2": true})
	assert.Equal(t, uint64(1), src.Stats().StaleHosts)
	assert.Empty(t, src.Hosts())
	rt.mu.Lock()
	last := rt.events[len(rt.events)-1]
	rt.mu.Unlock()
	assert.Equal(t, router.RouteReadmitted, last.Kind)
	assert.Contains(t, last.Reason, "stale: host node-a silent since")

	require.NoError(t, pub.Heartbeat()) // back: its verdicts count again
	rt.waitRoutable("f", map[string]bool{"i-p1": false, "i-p2": true})
}

// checker is a pull checker that fails the instances it is told to.
type checker struct {
	mu    sync.Mutex
	fails map[string]bool
}

func (c *checker) set(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fails = map[string]bool{}
	for _, id := range ids {
		c.fails[id] = true
	}
}

func (c *checker) Check(_ context.Context, inst *lifecycle.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails[inst.ID] {
		return errors.New("dial tcp: i/o timeout")
	}
	return nil
}

// Staleness is not death. Host node-a reported i-a1 down; then its reports
// stop. The Source undoes its verdict, and the dataplane's own pull checks
// alone decide for node-a's instances, under the panic threshold: a
// partition from node-a (every pull check of its instances fails) ejects
// nothing, a really broken instance is ejected by the pull checks, and
// once they pass again every instance routes. A host that keeps beating
// keeps its verdict, partition or not.
func TestStalenessIsNotDeath(t *testing.T) {
	all := map[string]bool{"i-a1": true, "i-a2": true, "i-a3": true, "i-b1": true, "i-b2": true, "i-b3": true}
	with := func(off ...string) map[string]bool {
		m := map[string]bool{}
		for k, v := range all {
			m[k] = v
		}
		for _, id := range off {
			m[id] = false
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		beating   bool     // the host keeps sending heartbeats
		pullFails []string // the dataplane's pull checks that fail
		want      map[string]bool
		recovered map[string]bool // once pull checks pass again
	}{
		{"silent host, partitioned node: nothing ejected", false, []string{"i-a1", "i-a2", "i-a3"}, all, all},
		{"silent host, one broken instance: pull ejects it", false, []string{"i-a1"}, with("i-a1"), all},
		{"silent host, nothing broken: all route", false, nil, all, all},
		{"beating host, partitioned node: its verdict holds", true, []string{"i-a1", "i-a2", "i-a3"}, with("i-a1"), with("i-a1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			nc := connect(t, srv.URL())
			rt := newRoutes(t)
			for _, p := range []string{"a1", "a2", "a3"} {
				rt.add("f", p, "node-a")
			}
			for _, p := range []string{"b1", "b2", "b3"} {
				rt.add("f", p, "node-b")
			}
			clk := faastest.NewClock(time.Time{})
			chk := &checker{}
			chk.set(tc.pullFails...)
			h, err := router.NewHealthMonitor(rt.r, router.HealthConfig{Checker: chk, Clock: clk})
			require.NoError(t, err)
			defer h.Close()
			src, err := NewSource(SourceConfig{Conn: nc, Clock: clk})
			require.NoError(t, err)
			rt.watch(src, clk)
			require.NoError(t, clk.BlockUntil(t.Context(), 1))
			pub, err := NewPublisher(PublisherConfig{Conn: nc, Node: "node-a", Clock: faastest.NewClock(time.Time{})})
			require.NoError(t, err)
			require.NoError(t, pub.Update(PodStatus{Pod: "a1", State: StateDown, Reason: "ping timed out"}))
			received(t, src, 1)
			rt.waitRoutable("f", with("i-a1"))

			n := uint64(1)
			for range 5 { // readiness checks every 2 s, out after 3 failures
				clk.Advance(2 * time.Second)
				if tc.beating {
					require.NoError(t, pub.Heartbeat())
					n++
					received(t, src, n)
				}
				h.RunOnce(t.Context(), clk.Now())
			}
			if !tc.beating {
				require.Eventually(t, func() bool { return src.Stats().StaleHosts == 1 }, 10*time.Second, time.Millisecond)
			}
			rt.waitRoutable("f", tc.want)
			if len(tc.pullFails) == 3 {
				assert.Equal(t, []string{"node-a"}, h.PanickingNodes(), "all of node-a failing: the monitor suspects its network")
			}

			chk.set()
			clk.Advance(2 * time.Second)
			h.RunOnce(t.Context(), clk.Now())
			rt.waitRoutable("f", tc.recovered)
		})
	}
}
