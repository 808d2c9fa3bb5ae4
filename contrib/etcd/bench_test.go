package etcd_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/warmpool"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// benchStore returns a store on a client of etcd's own listener (not the
// outage proxy of Endpoint), whose requests c counts.
func benchStore(b *testing.B, c *rpcCounter) *etcd.Store {
	b.Helper()
	srv := etcdtest.Start(b)
	cfg := srv.ClientConfig()
	cfg.Endpoints = []string{srv.DirectEndpoint()}
	cfg.DialOptions = append(cfg.DialOptions, c.dialOptions()...)
	cl, err := clientv3.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close() })
	return newStore(b, cl, etcd.Config{})
}

// report adds the operations per second and the etcd requests per
// operation.
func report(b *testing.B, c *rpcCounter) {
	_, n := c.take()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(n)/float64(b.N), "requests/op")
}

const benchTTL = time.Minute

func BenchmarkAcquire(b *testing.B) {
	var rpcs rpcCounter
	s := benchStore(b, &rpcs)
	ctx := ctxOf(b)
	if _, err := s.Acquire(ctx, "warm-up", "A", benchTTL); err != nil {
		b.Fatal(err)
	}
	rpcs.take()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", benchTTL); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, &rpcs)
}

// BenchmarkRenew renews a holder's n leases in one batch: one request,
// whatever n.
func BenchmarkRenew(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprint("leases=", n), func(b *testing.B) {
			var rpcs rpcCounter
			s := benchStore(b, &rpcs)
			ctx := ctxOf(b)
			leases := make([]warmpool.Lease, n)
			for i := range leases {
				l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", benchTTL)
				if err != nil {
					b.Fatal(err)
				}
				leases[i] = l
			}
			rpcs.take()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r, err := s.Renew(ctx, leases, benchTTL)
				if err != nil || r[n-1].Token == 0 {
					b.Fatal(err, r[n-1])
				}
			}
			b.StopTimer()
			report(b, &rpcs)
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "leases/s")
		})
	}
}

// BenchmarkClaimRelease claims a lease and releases it (a pod handed out,
// then deleted); the Acquire of each round is not timed.
func BenchmarkClaimRelease(b *testing.B) {
	var rpcs rpcCounter
	s := benchStore(b, &rpcs)
	ctx := ctxOf(b)
	b.ReportAllocs()
	for i := range b.N {
		b.StopTimer()
		l, err := s.Acquire(ctx, fmt.Sprint("pod-", i), "A", benchTTL)
		if err != nil {
			b.Fatal(err)
		}
		rpcs.take()
		b.StartTimer()
		if err := s.Claim(ctx, l); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_, n := rpcs.take() // the last round's only
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(n), "requests/op")
}

// BenchmarkAcquireParallel acquires from 8 goroutines per CPU at once, as
// the managers of many nodes would: the store's throughput against one
// etcd.
func BenchmarkAcquireParallel(b *testing.B) {
	var rpcs rpcCounter
	s := benchStore(b, &rpcs)
	ctx := ctxOf(b)
	if _, err := s.Acquire(ctx, "warm-up", "A", benchTTL); err != nil {
		b.Fatal(err)
	}
	rpcs.take()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	var next atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Acquire(ctx, fmt.Sprint("pod-", next.inc()), "A", benchTTL); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	report(b, &rpcs)
}

func BenchmarkHeartbeat(b *testing.B) {
	var rpcs rpcCounter
	s := benchStore(b, &rpcs)
	ctx := ctxOf(b)
	m := warmpool.Member{ID: "node-a", Addr: "127.0.0.1:1", Weight: 1}
	if err := s.Heartbeat(ctx, m, benchTTL); err != nil {
		b.Fatal(err)
	}
	rpcs.take()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Heartbeat(ctx, m, benchTTL); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report(b, &rpcs)
}

// BenchmarkEmbeddedStart starts an embedded etcd until it is ready, and
// stops it.
func BenchmarkEmbeddedStart(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		srv, err := etcdtest.StartEmbedded(ctxOf(b), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		srv.Close()
	}
}
