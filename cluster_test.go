package faas

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClusterForwardsToTheOwnerOnce(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *Config) { c.NodeID = "dp-a" })
	b := newEnv(t, func(c *Config) { c.NodeID = "dp-b" })
	nodes := []ClusterNode{{ID: "dp-a", Addr: strings.TrimPrefix(a.gw.URL, "http://")}, {ID: "dp-b", Addr: strings.TrimPrefix(b.gw.URL, "http://")}}
	require.NoError(t, a.dp.SetCluster(nodes))
	require.NoError(t, b.dp.SetCluster(nodes))

	// A function that dp-b owns, deployed on both nodes.
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("fn-%d", i)
		if owner, _, _ := a.dp.Owner(id); owner == "dp-b" {
			break
		}
	}
	a.deploy(specFor(id, "hello"))
	b.deploy(specFor(id, "hello"))

	status, _, body := a.do(http.MethodPost, "/invoke/"+id, nil, "via a")
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "via a")
	resp, err := a.dp.Invoke(context.Background(), &Request{FunctionID: id, Body: []byte("invoke via a")})
	require.NoError(t, err)
	assert.Contains(t, string(resp.Body), "invoke via a")

	assert.EqualValues(t, 2, a.dp.Stats().Forwarded)
	fb := b.statsAfter(id, 2)
	assert.EqualValues(t, 2, fb.Requests, "the owner served both")
	fa, _ := a.dp.FunctionStats(id)
	assert.EqualValues(t, 0, fa.Requests, "the non-owner served nothing itself")
	assert.EqualValues(t, 0, b.dp.Stats().Forwarded, "a forwarded request is not forwarded again")

	// The owner becomes unreachable: the request is served locally. (A
	// keep-alive connection to the closed owner that the transport has not
	// yet noticed is dead would make the forward fail after the request
	// was written: that is answered 502, since the owner might have run
	// it. Dropping idle connections makes the next forward dial, and a
	// refused dial is a sure "never reached".)
	b.gw.Close()
	a.dp.cfg.Cluster.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	status, _, _ = a.do(http.MethodPost, "/invoke/"+id, nil, "fallback")
	require.Equal(t, http.StatusOK, status)
	assert.EqualValues(t, 1, a.dp.Stats().Failovers)
	fa = a.statsAfter(id, 1)
	assert.EqualValues(t, 1, fa.Requests)
}

func TestSetClusterValidates(t *testing.T) {
	d := newRoutedDataplane(t, 1, 0, func(c *Config) { c.NodeID = "me" })
	assert.ErrorIs(t, d.SetCluster([]ClusterNode{{ID: "other", Addr: "x:1"}}), ErrUnknownNode)
	assert.ErrorIs(t, d.SetCluster([]ClusterNode{{ID: "me"}, {ID: "other"}}), ErrInvalidConfig)
	assert.ErrorIs(t, d.SetCluster([]ClusterNode{{ID: "me"}, {ID: "me", Addr: "x:1"}}), ErrInvalidConfig)
	assert.ErrorIs(t, d.SetCluster([]ClusterNode{{ID: "me"}, {ID: "other", Addr: "x:1", Weight: -1}}), ErrInvalidConfig)
	require.NoError(t, d.SetCluster([]ClusterNode{{ID: "me"}, {ID: "other", Addr: "x:1", Weight: 2}}))
	owners := map[string]int{}
	for i := range 3000 {
		n, _, ok := d.Owner(fmt.Sprintf("f%d", i))
		require.True(t, ok)
		owners[n]++
	}
	assert.InDelta(t, 2000, owners["other"], 150, "weights shape the shares")
	require.NoError(t, d.SetCluster(nil))
	_, _, ok := d.Owner("f")
	assert.False(t, ok)
}
