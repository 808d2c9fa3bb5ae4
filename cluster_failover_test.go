package faas

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

func TestSuspectsBackOff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSuspects(time.Second)
	assert.False(t, s.any())
	for _, step := range []struct {
		at     time.Duration
		op     string // "mark" or "is"
		want   time.Duration
		wantIs bool
	}{
		{0, "mark", time.Second, false},
		{500 * time.Millisecond, "is", 0, true},
		{600 * time.Millisecond, "mark", 400 * time.Millisecond, false}, // the same outage counts once
		{time.Second, "is", 0, false},                                   // its window ended: tried again
		{time.Second, "mark", 2 * time.Second, false},                   // refused again: doubled
		{3 * time.Second, "mark", 4 * time.Second, false},
		{7 * time.Second, "mark", 8 * time.Second, false},
		{15 * time.Second, "mark", 16 * time.Second, false},
		{31 * time.Second, "mark", 32 * time.Second, false},
		{63 * time.Second, "mark", 32 * time.Second, false}, // capped at 32 times
	} {
		now := t0.Add(step.at)
		switch step.op {
		case "mark":
			assert.Equal(t, step.want, s.mark("n1", now), "mark at %v", step.at)
		case "is":
			assert.Equal(t, step.wantIs, s.is("n1", now), "is at %v", step.at)
		}
	}
	assert.True(t, s.any())
	assert.False(t, s.is("n2", t0), "other nodes are not suspect")
	s.clear("n1")
	assert.False(t, s.any())
	assert.Equal(t, time.Second, s.mark("n1", t0.Add(time.Hour)), "a cleared node starts afresh")
}

func TestClusterConfigValidates(t *testing.T) {
	store := warmpool.NewMemLeaseStore(nil)
	for name, c := range map[string]ClusterConfig{
		"nodes and membership":          {Nodes: []ClusterNode{{ID: "dataplane"}}, Membership: store, Leases: store, Advertise: "x:1"},
		"membership without leases":     {Membership: store, Advertise: "x:1"},
		"leases without membership":     {Leases: store},
		"membership without an address": {Membership: store, Leases: store},
		"negative weight":               {Membership: store, Leases: store, Advertise: "x:1", Weight: -1},
		"negative suspect timeout":      {SuspectTimeout: -1},
		"nodes without this node":       {Nodes: []ClusterNode{{ID: "other", Addr: "x:1"}}},
	} {
		_, err := New(Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}), Cluster: c})
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	_, err := New(Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}),
		Pool: warmpool.Config{Leases: store}})
	assert.ErrorIs(t, err, ErrInvalidConfig, "the pool's leases come from Cluster")
	d, err := New(Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}),
		Cluster: ClusterConfig{Membership: store, Leases: store, Advertise: "127.0.0.1:1"}})
	require.NoError(t, err)
	assert.ErrorIs(t, d.SetCluster(nil), ErrMembership, "the membership decides the nodes")
}

// Two Dataplanes with default config over one pod population could hand
// out the same pods: the second refuses to start.
func TestSharedPodsWithoutSharedLeasesAreRefused(t *testing.T) {
	ctx := context.Background()
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{})
	store := faastest.NewCodeStore(faastest.CodeStoreConfig{})
	a, err := New(Config{Pods: pods, Code: store})
	require.NoError(t, err)
	require.NoError(t, a.Start(ctx))
	defer a.Close()
	require.Eventually(t, func() bool { return a.Stats().Pool.Runtimes["go"].Idle > 0 }, 10*time.Second, 5*time.Millisecond)

	b, err := New(Config{Pods: pods, Code: store})
	require.NoError(t, err)
	err = b.Start(ctx)
	require.ErrorIs(t, err, warmpool.ErrSharedPopulation)
	assert.Contains(t, err.Error(), "Config.Cluster")
	require.NoError(t, b.Close())
	assert.Positive(t, a.Stats().Pool.Runtimes["go"].Idle, "the first Dataplane's pods are untouched")
}

// clusterNode is a Dataplane of a cluster on a shared pod population, with
// its gateway.
type clusterNode struct {
	dp *Dataplane
	gw *httptest.Server
}

func startClusterNode(t *testing.T, id string, pods warmpool.PodProvider, origin code.Store, store *warmpool.MemLeaseStore) *clusterNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dp, err := New(Config{
		Pods: pods, Code: origin, NodeID: id, Logger: testLogger(t),
		Cluster: ClusterConfig{Membership: store, Leases: store, Advertise: ln.Addr().String()},
		Pool: warmpool.Config{
			Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}},
			LeaseTTL: 3 * time.Second, ProbeInterval: time.Second,
		},
	})
	require.NoError(t, err)
	require.NoError(t, dp.Start(context.Background()))
	gw := &httptest.Server{Listener: ln, Config: &http.Server{Handler: dp}}
	gw.Start()
	n := &clusterNode{dp: dp, gw: gw}
	t.Cleanup(n.stop)
	return n
}

func (n *clusterNode) stop() {
	n.gw.Close()
	_ = n.dp.Close()
}

// The nodes of a membership find each other, split the functions and the
// pods, forward to the owner, and take a leaving node's functions over.
func TestMembershipSharesFunctionsAndPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a", "node-b"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Close() })
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = origin.Close() })
	store := warmpool.NewMemLeaseStore(nil)
	a := startClusterNode(t, "dp-a", pods, origin, store)
	b := startClusterNode(t, "dp-b", pods, origin, store)
	for _, n := range []*clusterNode{a, b} {
		require.Eventually(t, func() bool { return len(n.dp.Nodes()) == 2 }, 10*time.Second, 5*time.Millisecond, "the nodes find each other")
	}
	assert.Equal(t, a.dp.Nodes(), b.dp.Nodes(), "one view")
	assert.Equal(t, b.gw.Listener.Addr().String(), a.dp.Nodes()[1].Addr, "with the advertised address")

	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("fn-%d", i)
		if owner, _, _ := a.dp.Owner(id); owner == "dp-b" {
			break
		}
	}
	for _, n := range []*clusterNode{a, b} {
		require.NoError(t, n.dp.Deploy(ctx, specFor(id, "hello")))
	}
	resp, err := http.Post(a.gw.URL+"/invoke/"+id, "text/plain", strings.NewReader("via a"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, a.dp.Stats().Forwarded, "dp-a forwarded to the owner")
	requireServed(t, b.dp, id, 1, "dp-b served it")

	// No pod is held by both nodes' warm pools.
	require.Eventually(t, func() bool {
		return a.dp.Stats().Pool.Members == 2 && b.dp.Stats().Pool.Members == 2
	}, 10*time.Second, 5*time.Millisecond)
	assert.Zero(t, a.dp.Stats().Pool.ForeignPods+b.dp.Stats().Pool.ForeignPods)

	// dp-b leaves: its functions move to dp-a, which serves them itself.
	b.stop()
	require.Eventually(t, func() bool { return len(a.dp.Nodes()) == 1 }, 10*time.Second, 5*time.Millisecond, "a graceful leave is seen at once")
	owner, _, _ := a.dp.Owner(id)
	assert.Equal(t, "dp-a", owner)
	resp, err = http.Post(a.gw.URL+"/invoke/"+id, "text/plain", strings.NewReader("after"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireServed(t, a.dp, id, 1, "dp-a serves dp-b's function")
}

// requireServed waits until d has recorded n requests of the function (a
// request is recorded once its answer is written).
func requireServed(t *testing.T, d *Dataplane, id string, n uint64, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		st, _ := d.FunctionStats(id)
		return st.Requests == n
	}, 10*time.Second, 2*time.Millisecond, msg)
}

// When the owner refuses connections, the request goes to the owner's
// successor in the function's rendezvous order, not to whichever node it
// arrived at; the refusing node is then passed over without a dial.
func TestFailoverGoesToTheSuccessor(t *testing.T) {
	t.Parallel()
	envs := map[string]*env{}
	for _, id := range []string{"dp-a", "dp-b", "dp-c"} {
		envs[id] = newEnv(t, func(c *Config) { c.NodeID = id })
	}
	var nodes []ClusterNode
	for _, id := range []string{"dp-a", "dp-b", "dp-c"} {
		nodes = append(nodes, ClusterNode{ID: id, Addr: strings.TrimPrefix(envs[id].gw.URL, "http://")})
	}
	for _, e := range envs {
		require.NoError(t, e.dp.SetCluster(nodes))
	}
	// A function whose order is dp-b, dp-c, dp-a.
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("fn-%d", i)
		c := envs["dp-a"].dp.cluster.Load()
		order := c.table.Rank(id, 3, nil)
		if order[0].ID == "dp-b" && order[1].ID == "dp-c" {
			break
		}
	}
	for _, e := range envs {
		e.deploy(specFor(id, "hello"))
	}
	a, b, c := envs["dp-a"], envs["dp-b"], envs["dp-c"]
	b.gw.Close()
	a.dp.cfg.Cluster.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()

	status, _, body := a.do(http.MethodPost, "/invoke/"+id, nil, "first")
	require.Equal(t, http.StatusOK, status, body)
	st := a.dp.Stats()
	assert.EqualValues(t, 1, st.Failovers, "dp-b refused")
	assert.EqualValues(t, 1, st.Forwarded, "then dp-c took it")
	fc := c.statsAfter(id, 1)
	assert.EqualValues(t, 1, fc.Requests, "the successor served it")
	fa, _ := a.dp.FunctionStats(id)
	assert.Zero(t, fa.Requests, "not the node it arrived at")

	resp, err := a.dp.Invoke(context.Background(), &Request{FunctionID: id, Body: []byte("second")})
	require.NoError(t, err)
	assert.Contains(t, string(resp.Body), "second")
	st = a.dp.Stats()
	assert.EqualValues(t, 1, st.Failovers, "a suspect node is not dialled again")
	assert.EqualValues(t, 1, st.PassedOver)
	c.statsAfter(id, 2)

	// Every node down the order refuses: the last one serves it itself.
	c.gw.Close()
	a.dp.cfg.Cluster.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	status, _, body = a.do(http.MethodPost, "/invoke/"+id, nil, "third")
	require.Equal(t, http.StatusOK, status, body)
	a.statsAfter(id, 1)
	assert.EqualValues(t, 2, a.dp.Stats().Failovers)
}

// A forward that may have reached the node is never sent elsewhere.
func TestForwardThatMayHaveRunIsNotRetried(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *Config) { c.NodeID = "dp-a" })
	// dp-b accepts the connection and reads the request, then hangs up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = conn.Read(buf)
			conn.Close()
		}
	}()
	require.NoError(t, a.dp.SetCluster([]ClusterNode{{ID: "dp-a", Addr: "x"}, {ID: "dp-b", Addr: ln.Addr().String()}}))
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("fn-%d", i)
		if owner, _, _ := a.dp.Owner(id); owner == "dp-b" {
			break
		}
	}
	a.deploy(specFor(id, "hello"))
	status, h, _ := a.do(http.MethodPost, "/invoke/"+id, nil, "maybe ran")
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Equal(t, "instance_failure", h.Get("X-Faas-Error-Code"))
	fa, _ := a.dp.FunctionStats(id)
	assert.Zero(t, fa.Requests, "not run here too")
	assert.Zero(t, a.dp.Stats().Failovers)

	// The node that broke the connection off is passed over now.
	status, _, _ = a.do(http.MethodPost, "/invoke/"+id, nil, "next")
	assert.Equal(t, http.StatusOK, status)
	assert.EqualValues(t, 1, a.dp.Stats().PassedOver)
	a.statsAfter(id, 1)

	// Invoke's forward is not retried either.
	a.dp.suspects.clear("dp-b")
	_, err = a.dp.Invoke(context.Background(), &Request{FunctionID: id})
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
	a.statsAfter(id, 1)
}
