package faastest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/sharding"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression: a cold start that took no virtual time was not counted as
// cold (the instance was Ready at the very instant the request arrived).
func TestZeroTimeColdStartsCountAsCold(t *testing.T) {
	cfg := instant(1)
	cfg.Default = FunctionSpec{KeepAlive: -1, Load: Const(0), Init: Const(0)}
	r, err := Run(cfg, sparse(20, 3*time.Minute, time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 400, r.Total.Completed)
	assert.Zero(t, r.Total.ColdStart.Mean, "the cold starts take no time")
	assert.EqualValues(t, 400, r.Total.ColdStarts)
	assert.EqualValues(t, 400, r.Total.ColdInvocations, "a cold start is a cold start whatever it costs")
	assert.InDelta(t, 1.0, r.Total.ColdStartRatio, 0)
}

func TestFunctionWideLimit(t *testing.T) {
	// 200 requests of 1 s within 100 ms against a limit of 5.
	var arr []Arrival
	for i := range 200 {
		arr = append(arr, Arrival{At: time.Duration(i) * time.Millisecond / 2, Function: "db"})
	}
	cfg := instant(1, FunctionSpec{ID: "db", Service: Const(time.Second), MaxConcurrency: 5, MaxInstances: 100})
	r, err := Run(cfg, Slice(arr))
	require.NoError(t, err)
	f, _ := r.Function("db")
	assert.LessOrEqual(t, f.PeakConcurrency, 5, "never more than the limit at once")
	assert.Equal(t, 5, f.PeakConcurrency)
	assert.EqualValues(t, 195, f.Limited, "the rest is refused at once")
	assert.EqualValues(t, 5, f.Completed)
	assert.Equal(t, r.Limits.FunctionLimit.Requests, f.Limited)
	require.NotEmpty(t, r.Decided())
	assert.Equal(t, "FunctionLimit", r.Decided()[0].Limit)
	assert.Contains(t, r.Decided()[0].Text, "refused 97.5% of the invocations")
}

// TestHeterogeneousNodes compares the router's policies on unequal
// instances in the simulator itself: half the nodes run at a quarter of
// the speed. Each node's execution time per request is the service time
// over its speed (the work done at speed 1 is the demand), and the
// policies that read utilization send the slow instances less work than
// round robin does, at a fraction of its latency.
func TestHeterogeneousNodes(t *testing.T) {
	run := func(p router.Policy) *Report {
		// Instances that queue inside (Parallelism 1), so that a policy
		// reading utilization sees each one's backlog: 4 instances on
		// fast nodes serve 100/s each, 4 on slow nodes 25/s each, and
		// 300/s arrive.
		cfg := instant(2, FunctionSpec{ID: "f", Service: Exp(10 * time.Millisecond), Concurrency: 50, Parallelism: 1,
			MinInstances: 8, MaxInstances: 8})
		cfg.Code.Nodes = 8
		cfg.Speeds = Speeds{Nodes: []float64{1, 0.25}}
		cfg.Policy, cfg.WarmUp = p, 10*time.Second
		r, err := Run(cfg, Poisson("f", 300, 70*time.Second, 3))
		require.NoError(t, err)
		return r
	}
	slowShare := func(r *Report) float64 {
		var slow, all int64
		var work float64
		for _, n := range r.Nodes {
			all += n.Served
			work += n.BusySeconds * n.Speed
			if n.Speed < 1 {
				slow += n.Served
			}
		}
		assert.Equal(t, r.Total.Completed, all, "every completion was on a node")
		// The work done, at speed 1, is the demand: 10 ms a request.
		assert.InEpsilon(t, 0.01*float64(all), work, 0.03)
		return float64(slow) / float64(all)
	}
	rr, p2c, lu := run(router.RoundRobin()), run(router.P2C()), run(router.LeastUtilized())
	t.Logf("slow nodes served: round robin %.1f%%, p2c %.1f%%, least-utilized %.1f%%; mean latency %v, %v, %v",
		100*slowShare(rr), 100*slowShare(p2c), 100*slowShare(lu), rr.Total.Latency.Mean, p2c.Total.Latency.Mean, lu.Total.Latency.Mean)
	// Round robin skips only full instances: the slow ones fill up and
	// their queues make its mean latency an order of magnitude worse.
	assert.Less(t, slowShare(p2c), slowShare(rr))
	assert.Less(t, slowShare(lu), slowShare(rr)-0.05)
	assert.Less(t, 5*p2c.Total.Latency.Mean, rr.Total.Latency.Mean)
	assert.Less(t, lu.Total.Latency.Mean, p2c.Total.Latency.Mean, "a perfectly informed scan does better still (no herding here)")

	// The instances' own spread: the same work, unequal speeds.
	cfg := instant(1, FunctionSpec{ID: "f", Service: Const(100 * time.Millisecond), MinInstances: 16, MaxInstances: 16})
	cfg.Speeds.InstanceSigma = 0.8
	r, err := Run(cfg, Poisson("f", 20, time.Minute, 1))
	require.NoError(t, err)
	assert.Greater(t, r.Total.Latency.P95, r.Total.Latency.P50*5/4, "some instances are slower")
}

func TestHopAndForwarding(t *testing.T) {
	spec := FunctionSpec{ID: "f", Service: Const(10 * time.Millisecond), MinInstances: 1, MaxInstances: 1, Concurrency: 100}
	base := instant(1, spec)
	base.WarmUp = time.Second
	w := func() Workload { return Periodic("f", 100*time.Millisecond, time.Second, 11*time.Second) }

	hop := base
	hop.Hop = Const(3 * time.Millisecond)
	r, err := Run(hop, w())
	require.NoError(t, err)
	assert.Equal(t, 13*time.Millisecond, r.Total.Latency.Mean, "the hop is part of the time on the instance")

	// Four dataplanes: three quarters of the invocations reach one that
	// does not own the function and are forwarded, once.
	multi := instant(1, spec)
	multi.WarmUp = time.Second
	multi.Dataplanes = 4
	multi.Forward = Const(2 * time.Millisecond)
	r, err = Run(multi, w())
	require.NoError(t, err)
	var arrived, forwarded, owned int64
	for _, dp := range r.Dataplanes {
		arrived += dp.Arrived
		forwarded += dp.Forwarded
		owned += dp.Functions
	}
	assert.EqualValues(t, 1, owned, "one owner")
	assert.EqualValues(t, 100, arrived)
	assert.InDelta(t, 0.75*float64(arrived), float64(forwarded), 15)
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
	forwardedShare := float64(forwarded) / float64(arrived)
	assert.InDelta(t, float64(10*time.Millisecond)+forwardedShare*float64(2*time.Millisecond), float64(r.Total.Latency.Mean), float64(200*time.Microsecond))
	assert.Equal(t, 12*time.Millisecond, r.Total.Latency.Max, "forwarded once, never twice")
}

// TestDataplanesOwnTheirFunctions checks the ownership against the real
// sharding.Table: a function's instances and cold starts belong to its
// owner's pools and bounds.
func TestDataplanesOwnTheirFunctions(t *testing.T) {
	var ws []Workload
	for i := range 60 {
		ws = append(ws, Periodic(fmt.Sprintf("fn-%02d", i), time.Minute, time.Duration(i)*time.Second, 10*time.Minute))
	}
	r, err := Run(Config{Seed: 1, Dataplanes: 3, NoShedding: true}, Merge(ws...))
	require.NoError(t, err)
	table := sharding.MustNew(sharding.Node{ID: "dp-0", Weight: 1}, sharding.Node{ID: "dp-1", Weight: 1}, sharding.Node{ID: "dp-2", Weight: 1})
	want := map[string]int64{}
	for i := range 60 {
		n, _ := table.Pick(fmt.Sprintf("fn-%02d", i))
		want[n.ID]++
	}
	for _, dp := range r.Dataplanes {
		assert.Equal(t, want[dp.Node], dp.Functions, dp.Node)
		assert.Positive(t, dp.Functions)
	}
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
}

// TestInstanceCrashes: crashes fail what their instances hold; the
// router's rules decide what is retried. A request that never reached the
// function is retried, one that did only when the function is
// idempotent, and never more than once.
func TestInstanceCrashes(t *testing.T) {
	run := func(idempotent bool) *Report {
		cfg := instant(4, FunctionSpec{ID: "f", Service: Exp(500 * time.Millisecond), Concurrency: 4, Parallelism: 2,
			MinInstances: 4, MaxInstances: 8, Idempotent: idempotent})
		cfg.Failures = Failures{InstanceCrashRate: 60} // one a minute per instance
		r, err := Run(cfg, Poisson("f", 10, 10*time.Minute, 5))
		require.NoError(t, err)
		return r
	}
	plain, idem := run(false), run(true)
	for _, r := range []*Report{plain, idem} {
		s := r.Total
		assert.Equal(t, s.Invocations, s.Completed+s.Failed+s.TimedOut+s.QueueFull+s.Shed+s.Limited)
		assert.Greater(t, r.Failures.Crashes, int64(20))
		assert.Positive(t, s.Retried)
		assert.Greater(t, float64(s.Completed), 0.9*float64(s.Invocations), "replacements keep the function up")
	}
	t.Logf("not idempotent: %d failed, %d retried; idempotent: %d failed, %d retried; %d crashes",
		plain.Total.Failed, plain.Total.Retried, idem.Total.Failed, idem.Total.Retried, plain.Failures.Crashes)
	assert.Positive(t, plain.Total.Failed, "requests executing when their instance died")
	assert.Less(t, idem.Total.Failed, plain.Total.Failed/2, "idempotent ones get another instance")
	assert.Greater(t, idem.Total.Retried, plain.Total.Retried)
}

// TestNodeLoss: a lost node takes its instances, pods, cold starts and
// cache; the function carries on elsewhere.
func TestNodeLoss(t *testing.T) {
	cfg := instant(2, FunctionSpec{ID: "f", Service: Exp(200 * time.Millisecond), MinInstances: 6, MaxInstances: 12, Idempotent: true})
	cfg.Code.Nodes = 3
	cfg.Failures = Failures{NodeLossRate: 6, Downtime: time.Minute} // a loss every 10 minutes per node
	r, err := Run(cfg, Poisson("f", 20, 30*time.Minute, 6))
	require.NoError(t, err)
	s := r.Total
	t.Logf("%d nodes lost, %d crashes, %d failed, %d retried, %d cold starts", r.Failures.NodesLost, r.Failures.Crashes, s.Failed, s.Retried, s.ColdStarts)
	assert.Greater(t, r.Failures.NodesLost, int64(3))
	assert.GreaterOrEqual(t, r.Failures.Crashes, r.Failures.NodesLost, "a lost node crashes its instances")
	assert.Equal(t, s.Invocations, s.Completed+s.Failed+s.TimedOut+s.QueueFull+s.Shed+s.Limited)
	assert.Greater(t, float64(s.Completed), 0.97*float64(s.Invocations))
	assert.Greater(t, s.ColdStarts, int64(6), "lost instances were replaced")
}

// TestLimitsDecideTheOutcome: a storm of cold starts behind one pod
// creation at a time times out because of the bound, and the report says
// so; sized like a cluster, the same storm is the policies' business.
func TestLimitsDecideTheOutcome(t *testing.T) {
	var ws []Workload
	for i := range 300 {
		ws = append(ws, Periodic(fmt.Sprintf("f%03d", i), 0, time.Duration(i)*time.Millisecond, time.Hour))
	}
	small := Config{Seed: 1, NoShedding: true, MaxParallelCreates: 1, Default: FunctionSpec{QueueTimeout: 10 * time.Second}}
	r, err := Run(small, Merge(ws...))
	require.NoError(t, err)
	decided := r.Decided()
	require.NotEmpty(t, decided)
	assert.Equal(t, "MaxParallelCreates", decided[0].Limit, "%+v", decided)
	assert.Greater(t, decided[0].RequestShare, 0.5)
	assert.InDelta(t, r.Total.TimedOut, r.Limits.MaxParallelCreates.Requests+r.Limits.MaxColdStarts.Requests+r.Limits.MaxInstances.Requests, 3,
		"every timeout but the last few is put down to a limit here")
	var text strings.Builder
	require.NoError(t, r.WriteText(&text, 0))
	assert.Contains(t, text.String(), "decided by limits, not by the policies: MaxParallelCreates made")

	// The same functions, sized as a cluster and arriving over a minute
	// rather than all at once: nothing decided by a limit.
	ws = ws[:0]
	for i := range 300 {
		ws = append(ws, Periodic(fmt.Sprintf("f%03d", i), 0, time.Duration(i)*200*time.Millisecond, time.Hour))
	}
	cluster := ClusterConfig(300)
	cluster.Seed, cluster.Default = 1, small.Default
	r, err = Run(cluster, Merge(ws...))
	require.NoError(t, err)
	assert.Empty(t, r.Decided(), "%+v", r.Decided())
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
	assert.Len(t, r.Dataplanes, MinDataplanes)
	text.Reset()
	require.NoError(t, r.WriteText(&text, 0))
	assert.Contains(t, text.String(), "decided by the policies")
}

func TestClusterConfig(t *testing.T) {
	for _, tt := range []struct{ functions, dataplanes, nodes int }{
		{0, 3, 8}, {1000, 3, 10}, {100_000, 10, 1000}, {250_001, 26, 2501},
	} {
		c := ClusterConfig(tt.functions)
		assert.Equal(t, tt.dataplanes, c.Dataplanes, "%d functions", tt.functions)
		assert.Equal(t, tt.nodes, c.Code.Nodes, "%d functions", tt.functions)
		sh, err := c.Shedder()
		require.NoError(t, err)
		assert.Equal(t, DataplaneCapacity, sh.Limit())
	}
}

// TestFixedKeepAliveIsExact: a function called every 30 s with a 6 s
// keep-alive. The KPA keeps its instance while its 60 s average is above
// zero, so every call finds it warm; the fixed keep-alive does what it
// says: every call is cold, and the idle time paid is 6 s per call.
func TestFixedKeepAliveIsExact(t *testing.T) {
	w := func() Workload { return Periodic("f", 30*time.Second, 0, 30*time.Minute) }
	kpa := Config{Seed: 1, NoShedding: true, Default: FunctionSpec{KeepAlive: 6 * time.Second, Service: Const(100 * time.Millisecond)}}
	fixed := kpa
	fixed.Scaler = KeepAliveFor
	c, err := Compare(kpa, fixed, w)
	require.NoError(t, err)
	assert.LessOrEqual(t, c.A.Total.ColdInvocations, int64(1), "the KPA: one cold start, the first")
	assert.EqualValues(t, 60, c.B.Total.ColdInvocations, "the fixed keep-alive: every call")
	perCall := c.B.Total.IdleInstanceSeconds / 60
	assert.InDelta(t, 6, perCall, 2.1, "6 s of keep-alive, decided on 2 s ticks")
}

// TestHybridLearnsPeriods: on timers every 20 minutes the hybrid policy
// pre-warms just before each call once it has seen a few: far fewer cold
// starts than the 10-minute keep-alive, and a fraction of the idle
// memory of the paper's 4-hour fallback.
func TestHybridLearnsPeriods(t *testing.T) {
	w := func() Workload {
		var ws []Workload
		for i := range 10 {
			ws = append(ws, Periodic(fmt.Sprintf("t%d", i), 20*time.Minute, time.Duration(i)*time.Minute, 8*time.Hour))
		}
		return Merge(ws...)
	}
	run := func(scaler func(FunctionSpec) (concurrency.ScalingPolicy, error)) *Report {
		r, err := Run(Config{Seed: 1, NoShedding: true, Until: 8 * time.Hour, Scaler: scaler}, w())
		require.NoError(t, err)
		return r
	}
	kpa, hybrid := run(KPAFor), run(HybridFor)
	fourHours := run(func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
		fn.KeepAlive = 4 * time.Hour
		return KeepAliveFor(fn)
	})
	t.Logf("cold: KPA %d, hybrid %d, 4 h keep-alive %d; idle GB-s: %.0f, %.0f, %.0f",
		kpa.Total.ColdInvocations, hybrid.Total.ColdInvocations, fourHours.Total.ColdInvocations,
		kpa.Total.IdleGBSeconds, hybrid.Total.IdleGBSeconds, fourHours.Total.IdleGBSeconds)
	assert.EqualValues(t, 240, kpa.Total.ColdInvocations, "10 minutes never bridge 20")
	assert.LessOrEqual(t, hybrid.Total.ColdInvocations, int64(10*(DefaultHybridSamplesForTest+1)), "cold only while learning")
	assert.Less(t, hybrid.Total.IdleGBSeconds, fourHours.Total.IdleGBSeconds/3)
	assert.Less(t, hybrid.Total.IdleGBSeconds, kpa.Total.IdleGBSeconds)
}

// DefaultHybridSamplesForTest is concurrency.DefaultHybridMinSamples.
const DefaultHybridSamplesForTest = concurrency.DefaultHybridMinSamples
