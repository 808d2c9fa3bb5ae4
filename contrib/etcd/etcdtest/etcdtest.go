// Package etcdtest runs a real etcd server inside the test process, for the
// tests of code that uses etcd (the contrib/etcd store, multi-process
// cluster tests): a single-member cluster from go.etcd.io/etcd/server/v3/embed
// on 127.0.0.1, on ports the kernel picks, its data in a directory of its
// own. It is ready in well under a second.
//
// A Server can be stopped and started again on the same data behind the
// same client address, as an etcd outage would be: clients reach it through
// a loopback TCP proxy of the Server's, which resets every connection at
// once when etcd stops (as a crash would) and forwards again when it runs.
// Clients configured with [Server.Endpoint] reconnect by themselves, and
// what etcd stored survives, leases included (etcd extends every lease by
// its full TTL when a member becomes leader, so an outage of its server
// does not expire a lease). [Server.Partition] cuts the clients off while
// etcd runs on, so that the leases nobody can renew do expire.
//
// The server ticks fast (heartbeat 10 ms, election 100 ms), so that its
// minimum lease TTL is one second and a restarted member is leader again
// within a fraction of a second; it does not fsync (a test's data never
// needs to survive a power cut) and logs only fatal errors.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// StartTimeout bounds how long Start waits for the server to be ready.
const StartTimeout = 30 * time.Second

// Server is an embedded single-member etcd cluster. Its methods are safe
// for concurrent use.
type Server struct {
	dir   string
	proxy *proxy // the stable client address

	mu          sync.Mutex
	e           *embed.Etcd
	partitioned bool
	startedIn   time.Duration
}

// StartEmbedded starts a server with its data under dir (created if
// missing) and waits, bounded by ctx, until it is ready. Close stops it;
// dir is left for the caller to remove.
func StartEmbedded(ctx context.Context, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	p, err := newProxy()
	if err != nil {
		return nil, fmt.Errorf("etcdtest: listen: %w", err)
	}
	s := &Server{dir: dir, proxy: p}
	if err := s.Resume(ctx); err != nil {
		p.close()
		return nil, err
	}
	return s, nil
}

// Start starts a server for a test, its data in a temporary directory of
// t's, and stops it when the test ends. It fails the test if etcd does not
// start.
func Start(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	s, err := StartEmbedded(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Endpoint returns the server's client URL, e.g. "http://127.0.0.1:40123".
// It stays the same across Stop and Resume: it is a loopback proxy's,
// which forwards to etcd while it runs and resets every connection when it
// stops, as a crash would.
func (s *Server) Endpoint() string { return "http://" + s.proxy.addr() }

// DirectEndpoint returns the client URL of etcd's own listener, without
// the proxy of Endpoint (benchmarks use it), or "" while the server is
// stopped. It changes with every start.
func (s *Server) DirectEndpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil {
		return ""
	}
	return "http://" + s.e.Clients[0].Addr().String()
}

// Dir returns the directory the server keeps its data in.
func (s *Server) Dir() string { return s.dir }

// StartedIn returns how long the latest start took until the server was
// ready.
func (s *Server) StartedIn() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startedIn
}

// Running reports whether the server is running (started and not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e != nil
}

// ClientConfig returns a client configuration for the server: its
// endpoint, no logging, and a reconnection backoff capped at 250 ms
// (etcd.ReconnectBackoff), so that a client notices a restarted server
// within a fraction of a second.
func (s *Server) ClientConfig() clientv3.Config {
	return clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{etcd.ReconnectBackoff(250 * time.Millisecond)},
	}
}

// NewClient returns a client of the server (see ClientConfig); the caller
// closes it.
func (s *Server) NewClient() (*clientv3.Client, error) {
	c, err := clientv3.New(s.ClientConfig())
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client: %w", err)
	}
	return c, nil
}

// Client returns a client of the server that is closed when the test ends
// (before the server stops).
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := s.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server, as a crash would: every client connection is
// reset, and the clients' requests fail or wait until it runs again. The
// data is kept for Resume. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil {
		return
	}
	// Cut the connections first: etcd's Close waits up to 5 s for the
	// streams (watches, keep-alives) of connected clients to end.
	s.proxy.setTarget("")
	s.e.Server.HardStop()
	s.e.Close()
	s.e = nil
}

// Partition cuts the clients off a running server (every connection is
// reset, new ones are refused) without stopping it: unlike Stop, etcd's
// clock goes on, and the leases nobody can renew expire. Heal ends it.
func (s *Server) Partition() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partitioned = true
	s.proxy.setTarget("")
}

// Heal ends a Partition: the clients reach the server again (once it runs).
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partitioned = false
	if s.e != nil {
		s.proxy.setTarget(s.e.Clients[0].Addr().String())
	}
}

// Resume starts a stopped server again on the same data, behind the same
// client address, and waits, bounded by ctx, until it is ready. Resuming a
// running server does nothing.
func (s *Server) Resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return nil
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = filepath.Join(s.dir, "etcd")
	// Port 0 everywhere: the member never talks to a peer, and clients
	// reach it through the proxy, whose address is the one advertised.
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: s.proxy.addr()}}
	cfg.ListenPeerUrls = []url.URL{local}
	cfg.AdvertisePeerUrls = []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "fatal"
	cfg.UnsafeNoFsync = true
	// etcd's minimum lease TTL is 1.5 election timeouts rounded up to a
	// second: 1 s here, 2 s with the defaults (100 ms, 1 s).
	cfg.TickMs = 10
	cfg.ElectionMs = 100

	began := time.Now()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start etcd in %s: %w", s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdtest: etcd failed while starting: %w", err)
	case <-ctx.Done():
		e.Server.Stop() // ReadyNotify never fires now; Close alone would wait for it
		e.Close()
		return fmt.Errorf("etcdtest: etcd not ready: %w", context.Cause(ctx))
	}
	if len(e.Clients) == 0 {
		e.Close()
		return errors.New("etcdtest: etcd started without a client listener")
	}
	s.startedIn = time.Since(began)
	s.e = e
	if !s.partitioned {
		s.proxy.setTarget(e.Clients[0].Addr().String())
	}
	return nil
}

// Restart stops the server and starts it again (Stop, then Resume),
// failing the test if it does not start.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server for good (see Stop) and its proxy; its data stays
// in Dir.
func (s *Server) Close() {
	s.Stop()
	s.proxy.close()
}
