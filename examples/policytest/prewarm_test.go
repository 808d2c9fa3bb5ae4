package policytest_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/examples/policytest"
	"github.com/faasplane/faas/faastest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const day = 8 * time.Hour

// trace is a synthetic working day: 30 timer functions firing every 12 to
// 30 minutes (what a fixed 10-minute keep-alive serves worst: every call
// cold, ten idle minutes paid each time), 30 functions with Poisson
// traffic from one call in 20 minutes to one every 10 s, and a busy API.
func trace() faastest.Workload {
	r := rand.New(rand.NewPCG(42, 42))
	var ws []faastest.Workload
	periods := []time.Duration{12, 15, 20, 25, 30}
	for i := range 30 {
		period := periods[i%len(periods)] * time.Minute
		phase := time.Duration(r.Int64N(int64(period)))
		ws = append(ws, faastest.Periodic(fmt.Sprintf("timer-%02d", i), period, phase, day))
	}
	for i := range 30 {
		rate := math.Exp(math.Log(1.0/1200) + r.Float64()*math.Log(120)) // 1/20 min to 1/10 s
		ws = append(ws, faastest.Poisson(fmt.Sprintf("poisson-%02d", i), rate, day, r.Uint64()))
	}
	ws = append(ws, faastest.Poisson("api", 1, day, 7))
	return faastest.Merge(ws...)
}

// TestPrewarmBeatsTheDefaultKeepAlive is the test a platform team writes:
// same trace, same seed, the default scaling policy against its own, and
// plain assertions on the figures that matter. The stated budget: at most
// 5 % more instance-seconds than the default for the cold starts saved.
func TestPrewarmBeatsTheDefaultKeepAlive(t *testing.T) {
	def := faastest.Config{Name: "KPA 10 min", Seed: 1, Until: day}
	mine := def
	mine.Name = "prewarm"
	mine.Scaler = func(fn faastest.FunctionSpec) (concurrency.ScalingPolicy, error) {
		return policytest.NewPrewarm(policytest.PrewarmConfig{KPA: concurrency.KPAConfig{
			MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances, KeepAlive: fn.KeepAlive,
		}})
	}
	c, err := faastest.Compare(def, mine, trace)
	require.NoError(t, err)
	var table strings.Builder
	require.NoError(t, c.WriteText(&table))
	t.Logf("\n%s", table.String())

	a, b := c.A.Total, c.B.Total
	require.Equal(t, a.Invocations, b.Invocations, "one trace")
	assert.Less(t, b.ColdInvocations, a.ColdInvocations/2, "fewer than half the cold starts")
	assert.LessOrEqual(t, b.InstanceSeconds, 1.05*a.InstanceSeconds, "within the 5 %% budget of instance-seconds")
	assert.LessOrEqual(t, float64(b.Latency.P99), 1.02*float64(a.Latency.P99), "the tail is no worse (within 2 %%)")
	assert.Zero(t, b.FailedRatio)

	// Each timer is cold only while the policy learns its period: the
	// first call and the MinSamples calls whose gaps it measures.
	for _, f := range c.B.Functions {
		if strings.HasPrefix(f.ID, "timer-") {
			assert.LessOrEqual(t, f.ColdInvocations, int64(4), f.ID)
		}
	}
}

func TestPrewarmDecisions(t *testing.T) {
	p, err := policytest.NewPrewarm(policytest.PrewarmConfig{})
	require.NoError(t, err)
	t0 := faastest.Epoch
	obs := func(lastActive time.Time, inFlight int) concurrency.Observation {
		return concurrency.Observation{Instances: 0, InstanceLimit: 10, InFlight: inFlight, LastActive: lastActive}
	}
	// Calls every 20 minutes: after three gaps the function is regular.
	var last time.Time
	for k := range 4 {
		last = t0.Add(time.Duration(k) * 20 * time.Minute)
		require.Equal(t, 1, p.Decide(last, obs(last, 1)).Desired, "busy: at least one instance")
	}
	at := func(d time.Duration) int { return p.Decide(last.Add(d), obs(last, 0)).Desired }
	assert.Equal(t, 0, at(5*time.Minute), "scaled to zero between calls")
	assert.Equal(t, 1, at(20*time.Minute-20*time.Second), "pre-warmed ahead of the next call")
	assert.Equal(t, 1, at(20*time.Minute+20*time.Second), "kept a little past it")
	assert.Equal(t, 0, at(25*time.Minute), "given up on a missed call")

	// An irregular function keeps the fixed keep-alive.
	q, err := policytest.NewPrewarm(policytest.PrewarmConfig{KPA: concurrency.KPAConfig{KeepAlive: 10 * time.Minute}})
	require.NoError(t, err)
	for _, m := range []time.Duration{0, 3, 30, 31} {
		last = t0.Add(m * time.Minute)
		q.Decide(last, obs(last, 1))
	}
	assert.Equal(t, 1, q.Decide(last.Add(9*time.Minute), obs(last, 0)).Desired)
	assert.Equal(t, 0, q.Decide(last.Add(11*time.Minute), obs(last, 0)).Desired)

	_, err = policytest.NewPrewarm(policytest.PrewarmConfig{History: 2, MinSamples: 3})
	assert.Error(t, err)
	_, err = policytest.NewPrewarm(policytest.PrewarmConfig{KPA: concurrency.KPAConfig{TargetUtilization: 2}})
	assert.Error(t, err)
}

// TestShippedHybridAlsoBeatsTheDefault runs the same trace through the
// hybrid histogram policy that ships with the concurrency package: on
// these timers it saves cold starts as this example's policy does.
func TestShippedHybridAlsoBeatsTheDefault(t *testing.T) {
	def := faastest.Config{Name: "KPA 10 min", Seed: 1, Until: day}
	hybrid := def
	hybrid.Name, hybrid.Scaler = "hybrid", faastest.HybridFor
	c, err := faastest.Compare(def, hybrid, trace)
	require.NoError(t, err)
	a, b := c.A.Total, c.B.Total
	t.Logf("cold invocations %d → %d, instance-seconds %.0f → %.0f", a.ColdInvocations, b.ColdInvocations, a.InstanceSeconds, b.InstanceSeconds)
	assert.Less(t, b.ColdInvocations, a.ColdInvocations/2, "fewer than half the cold starts")
	assert.Empty(t, c.B.Decided(), "decided by the policy")
}
