package faastest

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/faasplane/faas/router"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunInvariants runs random configurations on random workloads and
// checks what must hold whatever the policies decide: every invocation
// ends one way or another, the total is the sum of the functions, the
// cost and cold-start figures are consistent with each other and with the
// timeline.
func TestRunInvariants(t *testing.T) {
	policies := []router.Policy{router.P2C(), router.Random(), router.RoundRobin(), router.LeastUtilized(), router.FirstAvailable()}
	for seed := range uint64(25) {
		r := newRand(seed)
		nfn := 1 + r.IntN(12)
		var ws []Workload
		var specs []FunctionSpec
		for i := range nfn {
			id := fmt.Sprintf("f%d", i)
			d := time.Duration(1+r.IntN(20)) * time.Minute
			switch r.IntN(3) {
			case 0:
				ws = append(ws, Poisson(id, math.Exp(r.Float64()*8-4), d, r.Uint64()))
			case 1:
				ws = append(ws, OnOff(id, 50*r.Float64(), 0.1, time.Minute, 3*time.Minute, d, r.Uint64()))
			default:
				ws = append(ws, Periodic(id, time.Duration(1+r.IntN(300))*time.Second, 0, d))
			}
			conc := 1 + r.IntN(10)
			specs = append(specs, FunctionSpec{
				ID:           id,
				Service:      Exp(time.Duration(1+r.IntN(2000)) * time.Millisecond),
				Concurrency:  conc,
				Parallelism:  1 + r.IntN(conc),
				MaxInstances: 1 + r.IntN(20),
				KeepAlive:    []time.Duration{-1, 30 * time.Second, 10 * time.Minute}[r.IntN(3)],
				MaxQueue:     1 + r.IntN(200),
				QueueTimeout: time.Duration(100+r.IntN(30_000)) * time.Millisecond,
				// The models added since: a function-wide limit, retries
				// of what reached a failed instance, memory.
				MaxConcurrency: []int{0, 0, 1 + r.IntN(20)}[r.IntN(3)],
				Idempotent:     r.IntN(2) == 0,
				MemoryMB:       float64(int(64) << r.IntN(4)),
			})
		}
		cfg := Config{
			Seed:          seed,
			Functions:     specs,
			Policy:        policies[r.IntN(len(policies))],
			NoShedding:    r.IntN(2) == 0,
			MaxColdStarts: 1 + r.IntN(8),
			Code:          CodeConfig{Nodes: 1 + r.IntN(4), NodeCacheBytes: int64(1+r.IntN(4)) * DefaultCodeSize},
			Runtimes:      map[string]RuntimeSpec{"rt": {Min: r.IntN(3), Max: 3 + r.IntN(5)}},
			Dataplanes:    1 + r.IntN(3),
			Hop:           []Dist{nil, Const(time.Millisecond), Exp(3 * time.Millisecond)}[r.IntN(3)],
			Speeds:        Speeds{Nodes: [][]float64{nil, {1, 0.5}, {2, 1, 0.3}}[r.IntN(3)], InstanceSigma: []float64{0, 0.3}[r.IntN(2)]},
			Failures: Failures{
				InstanceCrashRate: []float64{0, 0, 10, 120}[r.IntN(4)],
				NodeLossRate:      []float64{0, 0, 3}[r.IntN(3)],
				Downtime:          time.Duration(10+r.IntN(300)) * time.Second,
			},
		}
		rep, err := Run(cfg, Merge(ws...))
		require.NoError(t, err, "seed %d", seed)
		check := func(name string, s *Stats) {
			msg := fmt.Sprintf("seed %d, %s", seed, name)
			assert.Equal(t, s.Invocations, s.Completed+s.Shed+s.Limited+s.QueueFull+s.TimedOut+s.Failed, msg)
			if cfg.Failures.InstanceCrashRate == 0 && cfg.Failures.NodeLossRate == 0 {
				assert.Zero(t, s.Failed+s.Retried, msg+": nothing fails without failures")
			}
			assert.LessOrEqual(t, s.IdleGBSeconds, s.GBSeconds+1e-6, msg)
			assert.LessOrEqual(t, s.ColdInvocations, s.Completed, msg)
			assert.LessOrEqual(t, s.Terminated, s.ColdStarts, msg)
			assert.LessOrEqual(t, s.IdleInstanceSeconds, s.InstanceSeconds+1e-6, msg)
			assert.GreaterOrEqual(t, s.IdleInstanceSeconds, 0.0, msg)
			if s.Completed > 0 {
				assert.LessOrEqual(t, s.Latency.P50, s.Latency.P99, msg)
				assert.LessOrEqual(t, s.QueueTime.Mean, s.Latency.Mean, msg)
				assert.Positive(t, s.InstanceSeconds, msg)
			}
			// Each instance lived at most the run.
			assert.LessOrEqual(t, s.InstanceSeconds, float64(s.PeakInstances)*rep.Duration.Seconds()+1e-6, msg)
		}
		var sum Stats
		for _, f := range rep.Functions {
			check(f.ID, &f.Stats)
			spec := specs[slices.IndexFunc(specs, func(s FunctionSpec) bool { return s.ID == f.ID })]
			if spec.MaxConcurrency > 0 {
				assert.LessOrEqual(t, f.PeakConcurrency, spec.MaxConcurrency, "seed %d, %s: the function-wide limit holds", seed, f.ID)
			} else {
				assert.Zero(t, f.Limited, "seed %d, %s", seed, f.ID)
			}
			assert.InDelta(t, f.InstanceSeconds*spec.MemoryMB/1024, f.GBSeconds, 1e-6*f.GBSeconds+1e-9, "seed %d, %s", seed, f.ID)
			sum.Invocations += f.Invocations
			sum.Completed += f.Completed
			sum.ColdInvocations += f.ColdInvocations
			sum.ColdStarts += f.ColdStarts
			sum.InstanceSeconds += f.InstanceSeconds
		}
		check("total", &rep.Total)
		assert.Equal(t, sum.Invocations, rep.Total.Invocations)
		assert.Equal(t, sum.Completed, rep.Total.Completed)
		assert.Equal(t, sum.ColdInvocations, rep.Total.ColdInvocations)
		assert.Equal(t, sum.ColdStarts, rep.Total.ColdStarts)
		assert.InDelta(t, sum.InstanceSeconds, rep.Total.InstanceSeconds, 1e-6*sum.InstanceSeconds+1e-9)
		cold := 0
		for _, p := range rep.Timeline {
			cold += p.ColdStarts
			assert.LessOrEqual(t, p.Idle, p.Instances)
			assert.LessOrEqual(t, p.Instances, rep.Total.PeakInstances)
		}
		assert.EqualValues(t, rep.Total.ColdStarts+rep.Failures.ColdStartsFailed, cold, "seed %d: every cold start asked for became Ready or lost its node", seed)
		var served, owned, arrived, forwarded int64
		for _, n := range rep.Nodes {
			served += n.Served
		}
		for _, dp := range rep.Dataplanes {
			owned += dp.Functions
			arrived += dp.Arrived
			forwarded += dp.Forwarded
		}
		assert.Equal(t, rep.Total.Completed, served, "seed %d: every completion was on a node", seed)
		assert.EqualValues(t, len(rep.Functions), owned, "seed %d: each function has one owner", seed)
		assert.LessOrEqual(t, forwarded, arrived, "seed %d", seed)
		if cfg.Dataplanes == 1 {
			assert.Zero(t, arrived+forwarded, "seed %d: nothing to forward", seed)
		}
	}
}
