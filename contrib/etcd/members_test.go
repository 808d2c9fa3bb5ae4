package etcd_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/require"
)

// A heartbeat costs one keep-alive request while nothing changed; a new
// address costs a write more; a new TTL a new etcd lease.
func TestHeartbeatCost(t *testing.T) {
	srv := etcdtest.Start(t)
	var rpcs rpcCounter
	s := newStore(t, countingClient(t, srv, &rpcs), etcd.Config{})
	ctx := ctxOf(t)
	m := warmpool.Member{ID: "node-a", Addr: "127.0.0.1:1", Weight: 1}
	for _, step := range []struct {
		what string
		ttl  time.Duration
		addr string
		want map[string]int
	}{
		{"join", 10 * time.Second, "127.0.0.1:1", map[string]int{"/etcdserverpb.Lease/LeaseGrant": 1, "/etcdserverpb.KV/Put": 1}},
		{"beat", 10 * time.Second, "127.0.0.1:1", map[string]int{"/etcdserverpb.Lease/LeaseKeepAlive": 1}},
		{"beat again", 10 * time.Second, "127.0.0.1:1", map[string]int{"/etcdserverpb.Lease/LeaseKeepAlive": 1}},
		{"move", 10 * time.Second, "127.0.0.1:2", map[string]int{"/etcdserverpb.Lease/LeaseKeepAlive": 1, "/etcdserverpb.KV/Put": 1}},
		{"new ttl", 20 * time.Second, "127.0.0.1:2", map[string]int{"/etcdserverpb.Lease/LeaseGrant": 1, "/etcdserverpb.KV/Put": 1, "/etcdserverpb.Lease/LeaseRevoke": 1}},
	} {
		m.Addr = step.addr
		require.NoError(t, s.Heartbeat(ctx, m, step.ttl), step.what)
		got, _ := rpcs.take()
		require.Equal(t, step.want, got, step.what)
		ms, err := s.Members(ctx)
		require.NoError(t, err)
		require.Equal(t, []warmpool.Member{m}, ms, step.what)
		rpcs.take()
	}
	require.NoError(t, s.Leave(ctx, m.ID))
	ms, err := s.Members(ctx)
	require.NoError(t, err)
	require.Empty(t, ms, "a member that left is gone at once")
}

// Keys under the members' prefix that this package did not write are no
// members, in a listing or a watch.
func TestForeignMemberValuesAreSkipped(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	var logs strings.Builder
	s := newStore(t, c, etcd.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := ctxOf(t)
	good := warmpool.Member{ID: "good", Weight: 1}
	require.NoError(t, s.Heartbeat(ctx, good, 10*time.Second))
	_, err := c.Put(ctx, prefixOf(t)+"members/liar", `{"id":"someone-else","weight":1}`)
	require.NoError(t, err)
	ms, err := s.Members(ctx)
	require.NoError(t, err)
	require.Equal(t, []warmpool.Member{good}, ms)
	require.Contains(t, logs.String(), "did not write")

	ch, err := s.Watch(ctx)
	require.NoError(t, err)
	require.Equal(t, []warmpool.Member{good}, <-ch)
	_, err = c.Put(ctx, prefixOf(t)+"members/good", "garbage")
	require.NoError(t, err)
	require.Empty(t, <-ch, "a member overwritten with garbage is no member")
}

func TestWatchEndsWhenTheStoreCloses(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := etcd.New(srv.Client(t), etcd.Config{Prefix: prefixOf(t)})
	require.NoError(t, err)
	ch, err := s.Watch(ctxOf(t))
	require.NoError(t, err)
	require.Empty(t, <-ch)
	require.NoError(t, s.Close())
	_, open := <-ch
	require.False(t, open, "the channel closes with the store")
}
