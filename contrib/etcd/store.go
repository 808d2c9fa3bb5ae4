package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/warmpool"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DefaultRequestTimeout is the default of Config.RequestTimeout.
const DefaultRequestTimeout = 2 * time.Second

// ErrClosed reports a call on a Store after Close.
var ErrClosed = errors.New("etcd: store closed")

// Config configures a [Store]. Prefix is required; every other zero field
// takes its default.
type Config struct {
	// Prefix is the namespace of the store's keys, e.g.
	// "/faasplane/cluster-a/": pod leases live under Prefix+"pods/" and
	// members under Prefix+"members/". Every process sharing a pod
	// population uses the same prefix; two populations use two prefixes.
	// It must end with "/" so that one prefix is never the start of
	// another's keys.
	Prefix string
	// RequestTimeout bounds the etcd requests of each call, even when the
	// caller's context has no deadline: during an etcd outage a call fails
	// after it (with an error wrapping context.DeadlineExceeded) instead of
	// hanging a manager's upkeep round. Default 2 seconds.
	RequestTimeout time.Duration
	// Logger receives warnings (values under the prefix this package did
	// not write). nil discards them.
	Logger *slog.Logger
	// Clock is the clock of Lease.Expires, which must be the clock of the
	// Manager that uses the store. Default: the system clock. etcd expires
	// leases by its own clock; Expires is a conservative local estimate.
	Clock clock.Clock
}

// Store is a [warmpool.LeaseStore], [warmpool.Membership] and
// [warmpool.MembershipWatcher] on etcd. See the package documentation for
// its layout in etcd and its guarantees. It is safe for concurrent use.
type Store struct {
	client  *clientv3.Client
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	podsPfx string
	memPfx  string

	ctx    context.Context // ends at Close: stops the watches
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	current  map[holderTTL]*etcdLease // the lease new keys of a holder go on
	granting map[holderTTL]chan struct{}
	tracked  map[string]trackedKey // pod key → the lease and token it was put with
	// pending holds the keys whose Acquire failed without knowing whether
	// etcd applied it (a timeout, a broken connection): the key may be on
	// the lease, and the next Acquire of the key by its holder takes it
	// (see Acquire). inflight counts the Acquires of a key in progress.
	pending  map[string]*etcdLease
	inflight map[string]int

	memberMu sync.Mutex // serializes Heartbeat and Leave
	members  map[string]*memberState
}

// Compile-time checks of the interfaces the Store implements.
var (
	_ warmpool.LeaseStore        = (*Store)(nil)
	_ warmpool.Membership        = (*Store)(nil)
	_ warmpool.MembershipWatcher = (*Store)(nil)
)

// New returns a store on client, which the caller keeps and closes after
// the Store. It makes no request: the first etcd lease is granted by the
// first Acquire or Heartbeat.
func New(client *clientv3.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("etcd: New needs a client")
	}
	switch {
	case cfg.Prefix == "":
		return nil, errors.New("etcd: Config.Prefix is required")
	case !strings.HasSuffix(cfg.Prefix, "/"):
		return nil, fmt.Errorf("etcd: Config.Prefix %q must end with \"/\"", cfg.Prefix)
	case cfg.RequestTimeout < 0:
		return nil, fmt.Errorf("etcd: Config.RequestTimeout %v is negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	cfg.Clock = clock.Or(cfg.Clock)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client:   client,
		cfg:      cfg,
		log:      log,
		now:      cfg.Clock.Now,
		podsPfx:  cfg.Prefix + "pods/",
		memPfx:   cfg.Prefix + "members/",
		current:  make(map[holderTTL]*etcdLease),
		granting: make(map[holderTTL]chan struct{}),
		tracked:  make(map[string]trackedKey),
		pending:  make(map[string]*etcdLease),
		inflight: make(map[string]int),
		members:  make(map[string]*memberState),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close ends the store's watches (their channels close) and waits for
// them; every later call fails with ErrClosed. It revokes nothing: the
// pod leases and memberships of the store lapse with their TTL unless the
// caller released them (Release) or left (Leave) first, as a Manager's
// Close does. It does not close the client. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// begin checks that the store is open and ctx live, and returns the
// context of the call's etcd requests: ctx bounded by RequestTimeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	return rctx, cancel, nil
}

// ReconnectBackoff returns a gRPC dial option for the clients of a Store
// (clientv3.Config.DialOptions): reconnection attempts from 50 ms apart,
// growing to max. gRPC's default grows to two minutes, so that a client of
// an etcd that was down for 10 s notices it back about 4 s late (0.12 s
// with max 250 ms, measured on loopback), and its managers hand out no pod
// meanwhile.
func ReconnectBackoff(max time.Duration) grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: min(50*time.Millisecond, max), Multiplier: 1.6, Jitter: 0.2, MaxDelay: max},
		MinConnectTimeout: time.Second,
	})
}

// ttlSeconds rounds a TTL up to whole seconds, as etcd grants them, with a
// minimum of one.
func ttlSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
