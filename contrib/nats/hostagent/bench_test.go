package hostagent

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// pushObserver signals every route change a pushed report makes.
type pushObserver struct {
	faas.NopObserver
	changed chan time.Time
}

func (o pushObserver) ObserveRoute(e router.Event) {
	if e.Cause == router.CauseHealthPush {
		select {
		case o.changed <- time.Now():
		default:
		}
	}
}

// BenchmarkPropagationDataplane measures a verdict's way from the host's
// publication (health.Publisher.Update, what the host agent calls once a
// round's pings are judged) to the route change in a real Dataplane (over
// pods/local, subscribed with a health.Source) through a NATS server on
// loopback: each iteration publishes "down" for the instance's pod and
// waits for its ejection, then "up" and waits for its readmission. It
// reports the p50, p99 and max of the latencies in microseconds.
func BenchmarkPropagationDataplane(b *testing.B) {
	agentBin, hello, buildDir := binaries(b)
	ctx := context.Background()
	srv := startServer(b)
	dpConn, hostConn := connect(b, srv.URL()), connect(b, srv.URL())
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Nodes: []string{"node-a"}})
	require.NoError(b, err)
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{Dir: buildDir})
	require.NoError(b, err)
	defer origin.Close()
	src, err := health.NewSource(health.SourceConfig{Conn: dpConn})
	require.NoError(b, err)
	obs := pushObserver{changed: make(chan time.Time, 1)}
	dp, err := faas.New(faas.Config{Pods: pods, Code: origin, Observer: obs,
		Pool:   warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 2}}, ProbeInterval: -1},
		Health: router.HealthConfig{Source: src}})
	require.NoError(b, err)
	require.NoError(b, dp.Start(ctx))
	defer dp.Close()
	require.NoError(b, dp.Deploy(ctx, faas.FunctionSpec{ID: "hello", Runtime: "go", Code: hello, MinInstances: 1}))
	var inst *lifecycle.Instance
	require.Eventually(b, func() bool {
		for _, ri := range dp.Routes("hello") {
			if ri.Routable {
				inst = ri.Instance
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond)
	pub, err := health.NewPublisher(health.PublisherConfig{Conn: hostConn, Node: inst.Node, Heartbeat: time.Hour})
	require.NoError(b, err)
	require.Eventually(b, func() bool { return src.Stats().Resyncs >= 1 }, 10*time.Second, time.Millisecond)
	require.NoError(b, dpConn.Flush())

	lat := make([]time.Duration, 0, 2*b.N)
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	step := func(state health.State) {
		sent := time.Now()
		if err := pub.Update(health.PodStatus{Pod: inst.PodID, Function: "hello", State: state}); err != nil {
			b.Fatal(err)
		}
		timeout.Reset(10 * time.Second)
		select {
		case at := <-obs.changed:
			lat = append(lat, at.Sub(sent))
		case <-timeout.C:
			b.Fatalf("no route change within 10 s of publishing %s", state)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		step(health.StateDown)
		step(health.StateUp)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}
