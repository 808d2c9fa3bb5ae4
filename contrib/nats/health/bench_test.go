package health

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// BenchmarkPropagation measures a verdict's way from the host's
// Publisher.Update to the route change in a dataplane's router, through a
// real NATS server on loopback and a Source: each iteration publishes
// "down" and waits for the ejection, then "up" and waits for the
// readmission. It reports the latencies' p50 and p99 (publication to
// route change) in microseconds.
func BenchmarkPropagation(b *testing.B) {
	srv := startServer(b)
	hostConn, dpConn := connect(b, srv.URL()), connect(b, srv.URL())
	changed := make(chan time.Time, 1)
	r, err := router.New(router.Config{}, router.Hooks{Observer: router.ObserverFunc(func(e router.Event) {
		if e.Cause == router.CauseHealthPush {
			changed <- time.Now()
		}
	})})
	require.NoError(b, err)
	now := time.Now()
	inst := lifecycle.NewInstance(lifecycle.Info{ID: "i-p1", FunctionID: "f", PodID: "p1", Node: "n1"}, now, r)
	require.NoError(b, r.Add(now, inst, concurrency.NewSlots(concurrency.Shared, 4), nil))
	for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
		require.NoError(b, inst.Transition(now, s, "bench"))
	}
	src, err := NewSource(SourceConfig{Conn: dpConn})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = src.Watch(ctx, func(rep router.HealthReport) { _ = r.ReportHealth(time.Now(), rep) }) })
	pub, err := NewPublisher(PublisherConfig{Conn: hostConn, Node: "n1", Heartbeat: time.Hour})
	require.NoError(b, err)
	require.Eventually(b, func() bool { return src.Stats().Resyncs == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(b, dpConn.Flush())

	lat := make([]time.Duration, 0, 2*b.N)
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	step := func(state State) {
		sent := time.Now()
		if err := pub.Update(PodStatus{Pod: "p1", State: state}); err != nil {
			b.Fatal(err)
		}
		timeout.Reset(10 * time.Second)
		select {
		case at := <-changed:
			lat = append(lat, at.Sub(sent))
		case <-timeout.C:
			b.Fatalf("no route change within 10 s of publishing %s", state)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		step(StateDown)
		step(StateUp)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}

// BenchmarkDecodeHeartbeat measures what a Source pays for each host's
// heartbeat: a heartbeat listing 10 pods that are not up.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	m := Message{Version: WireVersion, Kind: KindHeartbeat, Node: "ip-10-0-3-17.ec2.internal", Epoch: "QKX5VW3NLZJ2MUVTSW4SJQPGBA", StartedUnixNano: 1, Seq: 4711, HeartbeatMillis: 1000}
	for i := range 10 {
		m.Pods = append(m.Pods, PodStatus{Pod: fmt.Sprintf("go-7f9c2b%04d", i), Function: "resize-images", State: StateDown, Reason: "2 pings failed: context deadline exceeded"})
	}
	data, err := Encode(&m)
	require.NoError(b, err)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
