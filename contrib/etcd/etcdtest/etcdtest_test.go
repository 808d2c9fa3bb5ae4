package etcdtest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine of etcd, of a client or of the
// proxy outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// getFails checks that a read through c fails while the server is down
// or cut off.
func getFails(t *testing.T, c *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// An outage longer than a lease's TTL does not expire it: etcd's clock
// does not run while it is stopped, and when the restarted member becomes
// leader it extends every lease by its full TTL. The data, the revision
// and the endpoint survive too.
func TestRestartKeepsDataAndLeases(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := ctxOf(t)
	const ttl = 1 // second: the server's minimum
	g, err := c.Grant(ctx, ttl)
	require.NoError(t, err)
	require.EqualValues(t, ttl, g.TTL, "the minimum TTL is one second")
	put, err := c.Put(ctx, "k", "v", clientv3.WithLease(g.ID))
	require.NoError(t, err)
	endpoint := srv.Endpoint()

	srv.Stop()
	require.False(t, srv.Running())
	require.Empty(t, srv.DirectEndpoint())
	outage := time.Now()
	for time.Since(outage) < 2*ttl*time.Second {
		getFails(t, c) // the lease would have expired twice over
	}
	srv.Restart(t)
	require.True(t, srv.Running())
	require.Equal(t, endpoint, srv.Endpoint(), "the endpoint survives a restart")

	r, err := c.Get(ctx, "k")
	require.NoError(t, err, "the client reconnects by itself")
	require.Len(t, r.Kvs, 1, "the key on the lease survived")
	require.Equal(t, put.Header.Revision, r.Kvs[0].CreateRevision)
	require.EqualValues(t, g.ID, r.Kvs[0].Lease)
	ka, err := c.KeepAliveOnce(ctx, g.ID)
	require.NoError(t, err, "the lease survived")
	require.EqualValues(t, ttl, ka.TTL)

	// Unrenewed, it expires after the restart like any lease.
	require.Eventually(t, func() bool {
		r, err := c.Get(ctx, "k")
		require.NoError(t, err)
		return len(r.Kvs) == 0
	}, 10*time.Second, 10*time.Millisecond)
}

// A partition cuts the clients off while etcd runs on: its leases expire,
// as a client on etcd's own listener sees; Heal lets the clients back.
func TestPartitionExpiresLeases(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	ctx := ctxOf(t)
	g, err := c.Grant(ctx, 1)
	require.NoError(t, err)
	_, err = c.Put(ctx, "k", "v", clientv3.WithLease(g.ID))
	require.NoError(t, err)
	direct, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.DirectEndpoint()}, Logger: srv.ClientConfig().Logger})
	require.NoError(t, err)
	defer direct.Close()

	srv.Partition()
	getFails(t, c)
	require.Eventually(t, func() bool {
		r, err := direct.Get(ctx, "k")
		require.NoError(t, err, "etcd runs on")
		return len(r.Kvs) == 0
	}, 10*time.Second, 10*time.Millisecond, "the lease nobody can renew expires")
	srv.Heal()
	r, err := c.Get(ctx, "k")
	require.NoError(t, err, "the client is back")
	require.Empty(t, r.Kvs)
	_, err = c.KeepAliveOnce(ctx, g.ID)
	require.Error(t, err, "the lease is gone")
}

// A partition outlives a restart: Resume does not heal it.
func TestPartitionOutlivesARestart(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	srv.Partition()
	srv.Restart(t)
	getFails(t, c)
	srv.Heal()
	_, err := c.Get(ctxOf(t), "k")
	require.NoError(t, err)
}

func TestStopAndResumeAreIdempotent(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := ctxOf(t)
	require.NoError(t, srv.Resume(ctx), "resuming a running server")
	require.True(t, srv.Running())
	require.Positive(t, srv.StartedIn())
	srv.Stop()
	srv.Stop()
	require.False(t, srv.Running())
	require.NoError(t, srv.Resume(ctx))
	_, err := srv.Client(t).Put(ctx, "k", "v")
	require.NoError(t, err)
	srv.Close()
	srv.Close()
}

func TestStartEmbeddedReportsErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := etcdtest.StartEmbedded(ctxOf(t), file)
	require.Error(t, err, "a data directory that is a file")
	_, err = etcdtest.StartEmbedded(ctxOf(t), filepath.Join(file, "sub"))
	require.Error(t, err, "a data directory under a file")
}
