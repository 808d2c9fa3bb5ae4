package etcd_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

// TestMain fails the run if any goroutine outlives the tests: the stores'
// watches, the clients and the embedded servers must all be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// prefixOf returns a key prefix of the test's own, so that tests and
// subtests sharing a server never see each other's keys.
func prefixOf(t testing.TB) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	return "/faasplane-test/" + r.Replace(t.Name()) + "/"
}

// newStore returns a store on c with cfg (the test's prefix unless set),
// closed when the test ends.
func newStore(t testing.TB, c *clientv3.Client, cfg etcd.Config) *etcd.Store {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = prefixOf(t)
	}
	s, err := etcd.New(c, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// ctxOf returns a context for the test's calls, bounded so that a hang
// fails the test instead of the run.
func ctxOf(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rpcCounter counts the gRPC requests a client sends, by method: unary
// calls and streams (a keep-alive request is a stream of its own), each
// retry included.
type rpcCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *rpcCounter) add(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[method]++
}

// take returns the counts since the last take, and their total.
func (c *rpcCounter) take() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, total := c.n, 0
	for _, v := range n {
		total += v
	}
	c.n = nil
	return n, total
}

func (c *rpcCounter) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.add(method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// countingClient returns a client of srv whose requests c counts, closed
// when the test ends.
func countingClient(t testing.TB, srv *etcdtest.Server, c *rpcCounter) *clientv3.Client {
	t.Helper()
	cfg := srv.ClientConfig()
	cfg.DialOptions = append(cfg.DialOptions, c.dialOptions()...)
	cl, err := clientv3.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// atomicCounter hands out distinct numbers to parallel benchmark loops.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) inc() int64 { return c.n.Add(1) }
