package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const outageTimeout = 200 * time.Millisecond

// failsFast runs f with no deadline of its own and fails the test unless it
// returns an error of the store's unreachability (RequestTimeout ran out,
// or the connection broke under the request), not of a lease's state,
// before a generous bound: during an outage, calls fail, never hang.
func failsFast(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f(context.Background()) }()
	select {
	case err := <-done:
		require.Error(t, err, "%s during the outage", what)
		for _, semantic := range []error{warmpool.ErrLeaseHeld, warmpool.ErrLeaseLost, warmpool.ErrClaimed} {
			require.NotErrorIs(t, err, semantic, "%s during the outage", what)
		}
	case <-time.After(50 * outageTimeout):
		t.Fatalf("%s hangs during the outage (RequestTimeout %v)", what, outageTimeout)
	}
}

// renewUntil renews the leases again and again, as a manager's upkeep
// rounds would during an outage, until the local time passes until; every
// renewal must fail, and within RequestTimeout (context.DeadlineExceeded):
// a keep-alive is retried on a broken connection until then.
func renewUntil(t *testing.T, s *etcd.Store, leases []warmpool.Lease, ttl time.Duration, until time.Time) {
	t.Helper()
	for n := 0; n == 0 || time.Now().Before(until); n++ {
		_, err := s.Renew(context.Background(), leases, ttl)
		require.ErrorIs(t, err, context.DeadlineExceeded, "renewal %d during the outage", n)
	}
}

// With etcd stopped, every call fails within RequestTimeout, and changes
// nothing: once etcd is back (on the same data), the same store renews
// its leases, which etcd kept, with their tokens, although the outage
// lasted longer than their TTL (etcd extends every lease by its TTL when
// the restarted member becomes leader); the claim is still a claim, the
// member is still a member, and a watch opened before the outage goes on.
func TestEtcdStoppedAndRestarted(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newStore(t, srv.Client(t), etcd.Config{RequestTimeout: outageTimeout})
	other := newStore(t, srv.Client(t), etcd.Config{})
	ctx := ctxOf(t)
	const ttl = 2 * time.Second
	var leases []warmpool.Lease
	for i := range 3 {
		l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", ttl)
		require.NoError(t, err)
		leases = append(leases, l)
	}
	require.NoError(t, s.Claim(ctx, leases[0]))
	me := warmpool.Member{ID: "node-a", Addr: "127.0.0.1:1", Weight: 1}
	require.NoError(t, s.Heartbeat(ctx, me, ttl))
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	watch, err := other.Watch(wctx)
	require.NoError(t, err)
	require.Equal(t, []warmpool.Member{me}, <-watch)

	srv.Stop()
	failsFast(t, "Acquire", func(ctx context.Context) error {
		_, err := s.Acquire(ctx, "pod-new", "A", ttl)
		return err
	})
	failsFast(t, "Acquire of a new holder (a grant)", func(ctx context.Context) error {
		_, err := s.Acquire(ctx, "pod-new", "B", ttl)
		return err
	})
	failsFast(t, "Claim", func(ctx context.Context) error { return s.Claim(ctx, leases[1]) })
	failsFast(t, "Release", func(ctx context.Context) error { return s.Release(ctx, leases[2]) })
	failsFast(t, "Heartbeat", func(ctx context.Context) error { return s.Heartbeat(ctx, me, ttl) })
	failsFast(t, "Members", func(ctx context.Context) error { _, err := s.Members(ctx); return err })
	failsFast(t, "Leave", func(ctx context.Context) error { return s.Leave(ctx, me.ID) })
	renewUntil(t, s, leases, ttl, leases[0].Expires.Add(ttl))

	srv.Restart(t)
	back := time.Now()
	var renewed []warmpool.Lease
	require.Eventually(t, func() bool {
		renewed, err = s.Renew(context.Background(), leases, ttl)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the store renews once etcd is back")
	t.Logf("etcd restarted in %v; the store renewed %v after", srv.StartedIn(), time.Since(back))
	for i, l := range renewed {
		require.Equal(t, leases[i].Token, l.Token, "lease %d survived the outage with its token", i)
		require.True(t, l.Valid(time.Now()), "lease %d is valid again: %+v", i, l)
	}
	_, err = other.Acquire(ctx, leases[0].Key, "B", ttl)
	require.ErrorIs(t, err, warmpool.ErrClaimed, "the claim survived")
	_, err = other.Acquire(ctx, leases[1].Key, "B", ttl)
	require.ErrorIs(t, err, warmpool.ErrLeaseHeld, "the lease survived")
	require.NoError(t, s.Claim(ctx, renewed[1]), "the failed claim changed nothing and can be retried")
	require.NoError(t, s.Release(ctx, renewed[2]))
	require.NoError(t, s.Heartbeat(ctx, me, ttl))
	ms, err := other.Members(ctx)
	require.NoError(t, err)
	require.Equal(t, []warmpool.Member{me}, ms, "the member survived")
	_, err = s.Acquire(ctx, "pod-new", "A", ttl)
	require.NoError(t, err)

	// The watch opened before the outage resumes where it was.
	require.NoError(t, s.Leave(ctx, me.ID))
	require.Eventually(t, func() bool {
		select {
		case got, ok := <-watch:
			require.True(t, ok, "the watch ended with the outage")
			return len(got) == 0
		default:
			return false
		}
	}, 10*time.Second, 5*time.Millisecond, "the watcher sees the member leave after the outage")
}

// When the clients are cut off a running etcd for longer than a TTL, etcd
// expires the leases nobody renews: once the partition heals, the same
// store reports every lease of the holder lost at once, the keys are free,
// and its next Acquire works on a new etcd lease.
func TestPartitionLosesTheLeases(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newStore(t, srv.Client(t), etcd.Config{RequestTimeout: outageTimeout})
	ctx := ctxOf(t)
	const ttl = time.Second
	var leases []warmpool.Lease
	for i := range 5 {
		l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", ttl)
		require.NoError(t, err)
		leases = append(leases, l)
	}
	// A client on etcd's own listener is not cut off: it sees the expiry.
	direct, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.DirectEndpoint()}, Logger: srv.ClientConfig().Logger})
	require.NoError(t, err)
	defer direct.Close()

	srv.Partition()
	failsFast(t, "Acquire", func(ctx context.Context) error {
		_, err := s.Acquire(ctx, "pod-new", "A", ttl)
		return err
	})
	require.Eventually(t, func() bool {
		_, err := s.Renew(context.Background(), leases, ttl) // the upkeep goes on, and fails
		require.Error(t, err)
		r, err := direct.Get(ctx, prefixOf(t)+"pods/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		return r.Count == 0
	}, 10*time.Second, 10*time.Millisecond, "etcd expires the leases of the partitioned holder")

	srv.Heal()
	var renewed []warmpool.Lease
	require.Eventually(t, func() bool {
		renewed, err = s.Renew(context.Background(), leases, ttl)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the store answers once the partition heals")
	require.True(t, slices.IndexFunc(renewed, func(l warmpool.Lease) bool { return l.Token != 0 }) < 0, "every lease is lost: %+v", renewed)
	l, err := s.Acquire(ctx, leases[0].Key, "A", ttl)
	require.NoError(t, err)
	require.Greater(t, l.Token, leases[0].Token)
}
