package etcd_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewValidatesConfig(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	for _, tc := range []struct {
		name   string
		client *clientv3.Client
		cfg    etcd.Config
		want   string // "" for a valid config
	}{
		{"valid", c, etcd.Config{Prefix: "/p/"}, ""},
		{"valid with a timeout", c, etcd.Config{Prefix: "/p/", RequestTimeout: time.Millisecond}, ""},
		{"no client", nil, etcd.Config{Prefix: "/p/"}, "client"},
		{"no prefix", c, etcd.Config{}, "Prefix is required"},
		{"prefix without a slash", c, etcd.Config{Prefix: "/p"}, `must end with "/"`},
		{"negative timeout", c, etcd.Config{Prefix: "/p/", RequestTimeout: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := etcd.New(tc.client, tc.cfg)
			if tc.want == "" {
				require.NoError(t, err)
				require.NoError(t, s.Close())
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, s)
		})
	}
}

func TestRefusesBadArguments(t *testing.T) {
	srv := etcdtest.Start(t)
	s := newStore(t, srv.Client(t), etcd.Config{})
	ctx := ctxOf(t)
	for _, tc := range []struct {
		key, holder string
		ttl         time.Duration
	}{{"", "A", time.Second}, {"k", "", time.Second}, {"k", "A", 0}, {"k", "A", -time.Second}} {
		_, err := s.Acquire(ctx, tc.key, tc.holder, tc.ttl)
		require.Error(t, err, "Acquire(%q, %q, %v)", tc.key, tc.holder, tc.ttl)
	}
	_, err := s.Renew(ctx, nil, 0)
	require.Error(t, err, "Renew without a ttl")
	for _, l := range []warmpool.Lease{{Key: "k", Holder: "A"}, {Key: "k", Holder: "A", Token: 1 << 63}, {Holder: "A", Token: 3}} {
		require.ErrorIs(t, s.Claim(ctx, l), warmpool.ErrLeaseLost, "Claim(%+v)", l)
		require.ErrorIs(t, s.Release(ctx, l), warmpool.ErrLeaseLost, "Release(%+v)", l)
	}
	require.Error(t, s.Leave(ctx, ""), "Leave without an ID")
	require.Error(t, s.Heartbeat(ctx, warmpool.Member{ID: "m", Weight: nan()}, time.Second), "a NaN weight")
	entries, err := s.Leases(ctx)
	require.NoError(t, err)
	require.Empty(t, entries, "refused calls wrote nothing")
}

// A Renew of a holder's 500 leases is one keep-alive request: the keys all
// live on the holder's etcd lease.
func TestRenewCostsOneRequestPerHolder(t *testing.T) {
	srv := etcdtest.Start(t)
	var rpcs rpcCounter
	s := newStore(t, countingClient(t, srv, &rpcs), etcd.Config{})
	ctx := ctxOf(t)
	const n = 500
	// A TTL long enough that the acquires never find the etcd lease half
	// spent (which would send a keep-alive first).
	const ttl = 30 * time.Second
	leases := make([]warmpool.Lease, 0, n+1)
	for i := range n {
		l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", ttl)
		require.NoError(t, err)
		leases = append(leases, l)
	}
	byMethod, total := rpcs.take()
	require.Equal(t, 1, byMethod["/etcdserverpb.Lease/LeaseGrant"], "one etcd lease for the holder's %d acquires: %v", n, byMethod)
	require.Equal(t, n, byMethod["/etcdserverpb.KV/Txn"], "one transaction per acquire: %v", byMethod)
	require.Equal(t, n+1, total, "%v", byMethod)

	other, err := s.Acquire(ctx, "pod-of-B", "B", ttl)
	require.NoError(t, err)
	rpcs.take()

	renewed, err := s.Renew(ctx, leases, ttl)
	require.NoError(t, err)
	byMethod, total = rpcs.take()
	require.LessOrEqual(t, total, 2, "a renewal of %d leases of one holder: %v", n, byMethod)
	require.Equal(t, 1, byMethod["/etcdserverpb.Lease/LeaseKeepAlive"], "%v", byMethod)
	for i, l := range renewed {
		require.Equal(t, leases[i].Token, l.Token, "lease %d renewed", i)
		require.False(t, l.Expires.Before(leases[i].Expires), "lease %d's expiry moved back", i)
	}

	// Two holders in one batch: one keep-alive each.
	_, err = s.Renew(ctx, append(leases, other), ttl)
	require.NoError(t, err)
	byMethod, total = rpcs.take()
	require.Equal(t, 2, total, "a batch of two holders' leases: %v", byMethod)
}

// Revoking a holder's etcd lease behind the store's back (as its expiry
// would) loses every lease of the holder at once, without touching
// another holder's; the next Acquire grants a new etcd lease and works.
func TestLosingTheEtcdLeaseLosesEveryLease(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	s := newStore(t, c, etcd.Config{})
	ctx := ctxOf(t)
	var leases []warmpool.Lease
	for i := range 20 {
		l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", 5*time.Second)
		require.NoError(t, err)
		leases = append(leases, l)
	}
	bs, err := s.Acquire(ctx, "pod-of-B", "B", 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, leases[3]), "a claim lives on the same etcd lease")

	entries, err := s.Leases(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 21)
	ids := map[string]clientv3.LeaseID{}
	for _, e := range entries {
		ids[e.Holder] = e.LeaseID
		require.Equal(t, e.Key == leases[3].Key, e.Claimed, "entry %+v", e)
	}
	require.Len(t, ids, 2, "one etcd lease per holder: %v", entries)
	_, err = c.Revoke(ctx, ids["A"])
	require.NoError(t, err)

	renewed, err := s.Renew(ctx, append(leases, bs), 5*time.Second)
	require.NoError(t, err)
	for i, l := range renewed[:len(leases)] {
		require.Zero(t, l.Token, "A's lease %d survived the loss of its etcd lease", i)
	}
	require.Equal(t, bs.Token, renewed[len(leases)].Token, "B's lease was lost with A's")
	require.ErrorIs(t, s.Claim(ctx, leases[0]), warmpool.ErrLeaseLost)

	again, err := s.Acquire(ctx, leases[0].Key, "A", 5*time.Second)
	require.NoError(t, err, "the next Acquire grants a new etcd lease")
	require.Greater(t, again.Token, leases[0].Token)
	r, err := s.Renew(ctx, []warmpool.Lease{again}, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, again.Token, r[0].Token, "the new lease renews")
	entries, err = s.Leases(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, e := range entries {
		if e.Holder == "A" {
			require.NotEqual(t, ids["A"], e.LeaseID, "A's new key is on a new etcd lease")
		}
	}
}

// A lease acquired through another Store (another process) is not renewed
// by this one: a store renews the etcd leases it granted.
func TestRenewKnowsOnlyItsOwnLeases(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newStore(t, srv.Client(t), etcd.Config{})
	b := newStore(t, srv.Client(t), etcd.Config{}) // the same prefix
	ctx := ctxOf(t)
	l, err := a.Acquire(ctx, "pod", "A", time.Second)
	require.NoError(t, err)
	r, err := b.Renew(ctx, []warmpool.Lease{l}, time.Second)
	require.NoError(t, err)
	require.Zero(t, r[0].Token)
	// Claim and Release are checked by etcd: they work from any handle.
	require.NoError(t, b.Claim(ctx, l))
	r, err = a.Renew(ctx, []warmpool.Lease{l}, time.Second)
	require.NoError(t, err)
	require.Equal(t, l.Token, r[0].Token, "the claim through b kept the key on a's etcd lease")
	require.NoError(t, b.Release(ctx, l))
	r, err = a.Renew(ctx, []warmpool.Lease{l}, time.Second)
	require.NoError(t, err)
	// a cannot tell that b released the key: Claim and Release through a
	// refuse the lease, which is what keeps a pod from being handed out.
	require.ErrorIs(t, a.Claim(ctx, r[0]), warmpool.ErrLeaseLost)
}

// Racing acquires of one holder through one store share one etcd lease.
func TestConcurrentAcquiresShareOneGrant(t *testing.T) {
	srv := etcdtest.Start(t)
	var rpcs rpcCounter
	s := newStore(t, countingClient(t, srv, &rpcs), etcd.Config{})
	ctx := ctxOf(t)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			_, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", time.Second)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	byMethod, _ := rpcs.take()
	require.Equal(t, 1, byMethod["/etcdserverpb.Lease/LeaseGrant"], "%v", byMethod)
}

// What etcd returns is outside input: a value this package did not write
// is never overwritten, and is skipped by Leases.
func TestForeignValueIsHeldNotOverwritten(t *testing.T) {
	srv := etcdtest.Start(t)
	c := srv.Client(t)
	var logs strings.Builder
	s := newStore(t, c, etcd.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := ctxOf(t)
	_, err := c.Put(ctx, prefixOf(t)+"pods/foreign", "not json")
	require.NoError(t, err)
	_, err = s.Acquire(ctx, "foreign", "A", time.Second)
	require.ErrorIs(t, err, warmpool.ErrLeaseHeld)
	require.ErrorIs(t, err, etcd.ErrBadValue)
	r, err := c.Get(ctx, prefixOf(t)+"pods/foreign")
	require.NoError(t, err)
	require.Equal(t, "not json", string(r.Kvs[0].Value))
	entries, err := s.Leases(ctx)
	require.NoError(t, err)
	require.Empty(t, entries)
	require.Contains(t, logs.String(), "did not write")
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := etcd.New(srv.Client(t), etcd.Config{Prefix: prefixOf(t)})
	require.NoError(t, err)
	ctx := ctxOf(t)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Acquire(ctx, "k", "A", time.Second)
	require.ErrorIs(t, err, etcd.ErrClosed)
	_, err = s.Renew(ctx, nil, time.Second)
	require.ErrorIs(t, err, etcd.ErrClosed)
	require.ErrorIs(t, s.Heartbeat(ctx, warmpool.Member{ID: "m"}, time.Second), etcd.ErrClosed)
	_, err = s.Members(ctx)
	require.ErrorIs(t, err, etcd.ErrClosed)
	_, err = s.Watch(ctx)
	require.ErrorIs(t, err, etcd.ErrClosed)
}

func nan() float64 { return math.NaN() }

// An Acquire whose answer was lost (etcd applied it, the reply never
// came) leaves the key on the holder's etcd lease: the holder's next
// Acquire through the same store gets that lease, and nobody else does.
func TestAcquireWhoseAnswerWasLost(t *testing.T) {
	srv := etcdtest.Start(t)
	var lose atomic.Bool
	cfg := srv.ClientConfig()
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil && method == "/etcdserverpb.KV/Txn" && lose.CompareAndSwap(true, false) {
				return status.Error(codes.Unavailable, "test: the answer was lost")
			}
			return err
		}))
	c, err := clientv3.New(cfg)
	require.NoError(t, err)
	defer c.Close()
	s := newStore(t, c, etcd.Config{})
	other := newStore(t, srv.Client(t), etcd.Config{})
	ctx := ctxOf(t)
	const ttl = 10 * time.Second

	lose.Store(true)
	_, err = s.Acquire(ctx, "pod", "A", ttl)
	require.Error(t, err, "the answer was lost")
	entries, err := s.Leases(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 1, "etcd applied it")
	_, err = other.Acquire(ctx, "pod", "A", ttl)
	require.ErrorIs(t, err, warmpool.ErrLeaseHeld, "another store (process) of the same holder name inherits nothing")
	l, err := s.Acquire(ctx, "pod", "A", ttl)
	require.NoError(t, err, "the holder gets the lease its lost Acquire took")
	require.Equal(t, entries[0].Token, l.Token)
	_, err = s.Acquire(ctx, "pod", "A", ttl)
	require.ErrorIs(t, err, warmpool.ErrLeaseHeld, "once known, it is a live lease of the holder's")
	r, err := s.Renew(ctx, []warmpool.Lease{l}, ttl)
	require.NoError(t, err)
	require.Equal(t, l.Token, r[0].Token)
	require.NoError(t, s.Claim(ctx, l))

	// A lost answer of an Acquire that etcd refused is no lease.
	b, err := other.Acquire(ctx, "pod-of-B", "B", ttl)
	require.NoError(t, err)
	lose.Store(true)
	_, err = s.Acquire(ctx, "pod-of-B", "A", ttl)
	require.Error(t, err)
	_, err = s.Acquire(ctx, "pod-of-B", "A", ttl)
	require.ErrorIs(t, err, warmpool.ErrLeaseHeld)
	require.NoError(t, other.Release(ctx, b))
}
