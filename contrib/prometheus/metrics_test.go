package prometheus

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{MaxFunctions: -1},
		{NativeBucketFactor: 1},
		{NativeBucketFactor: 0.5},
		{LatencyBuckets: []float64{1, 0.5}},
		{ColdStartBuckets: []float64{1, 1}},
	} {
		_, err := New(c)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
	}
	m, err := New(Config{NativeBucketFactor: -1})
	require.NoError(t, err)
	assert.Zero(t, m.cfg.NativeBucketFactor, "negative turns native histograms off")
	_, err = NewAgentCollector(nil, nil, AgentConfig{Parallel: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// TestLabelsAreBounded is a property test: whatever function IDs come, in
// whatever order and concurrency, at most max+1 label values exist, a
// function keeps its label, and the first max IDs are the labelled ones.
func TestLabelsAreBounded(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, seed))
		max := 1 + rng.IntN(20)
		l := newLabeler(max)
		var order []string
		seen := map[string]string{}
		for range 500 {
			fn := fmt.Sprintf("fn-%d", rng.IntN(60))
			if rng.IntN(50) == 0 {
				fn = OtherFunctions // a function with the reserved name
			}
			got := l.label(fn)
			if prev, ok := seen[fn]; ok {
				require.Equal(t, prev, got, "a function keeps its label")
			} else if fn != OtherFunctions {
				order = append(order, fn)
			}
			seen[fn] = got
		}
		values := map[string]bool{}
		for fn, v := range seen {
			values[v] = true
			if v != OtherFunctions {
				require.Equal(t, fn, v)
			}
		}
		require.LessOrEqual(t, len(values), max+1)
		for i, fn := range order {
			require.Equal(t, i < max, seen[fn] == fn, "first come, first labelled: %s at %d", fn, i)
		}
		require.Equal(t, OtherFunctions, seen[OtherFunctions]+"", "the reserved name is folded")
	}
}

func TestObserveRequest(t *testing.T) {
	t0 := time.Unix(100, 0)
	sent := t0.Add(time.Millisecond)
	tests := []struct {
		name  string
		rec   faas.RequestRecord
		check func(t *testing.T, m *Metrics)
	}{
		{"warm", faas.RequestRecord{FunctionID: "f", Start: t0, Sent: sent, Latency: 3 * time.Millisecond, BilledBy: faas.BilledByAgent},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.starts.WithLabelValues("f", "warm")))
				assert.Equal(t, 1.0, testutil.ToFloat64(m.billedVec.WithLabelValues("agent")))
				assert.EqualValues(t, 1, samples(t, m.latency, "f"))
				assert.Zero(t, samples(t, m.queue, "f"), "no wait, no queue sample")
			}},
		{"cold", faas.RequestRecord{FunctionID: "f", Start: t0, Waited: true, Cold: true, QueueStart: t0, QueueEnd: sent, Sent: sent, BilledBy: faas.BilledByDataplane},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.starts.WithLabelValues("f", "cold")))
				assert.Equal(t, 1.0, testutil.ToFloat64(m.billedVec.WithLabelValues("dataplane")))
				assert.EqualValues(t, 1, samples(t, m.queue, "f"))
			}},
		{"busy", faas.RequestRecord{FunctionID: "f", Start: t0, Waited: true, QueueStart: t0, QueueEnd: sent, Sent: sent},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.starts.WithLabelValues("f", "busy")))
			}},
		{"shed by the shedder", faas.RequestRecord{FunctionID: "f", Code: lifecycle.CodeShed, ShedReason: loadshed.ReasonOverShare, Priority: loadshed.Critical},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.shed.WithLabelValues("f", "over_share", "critical")))
				assert.Zero(t, samples(t, m.latency, "f"), "a refusal has no latency sample")
				for _, s := range startNames {
					assert.Zero(t, testutil.ToFloat64(m.starts.WithLabelValues("f", s)), "nor a start")
				}
			}},
		{"no capacity in time", faas.RequestRecord{FunctionID: "f", Code: lifecycle.CodeTimeout, Waited: true, Start: t0, QueueStart: t0, Latency: time.Second},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.shed.WithLabelValues("f", "queue_timeout", "default")))
				assert.EqualValues(t, 1, samples(t, m.queue, "f"), "the failed wait is a queue sample")
			}},
		{"a timeout after sending is not a refusal", faas.RequestRecord{FunctionID: "f", Code: lifecycle.CodeTimeout, Sent: sent},
			func(t *testing.T, m *Metrics) {
				assert.Zero(t, testutil.CollectAndCount(m.shed))
			}},
		{"function limit", faas.RequestRecord{FunctionID: "f", Code: lifecycle.CodeConcurrencyLimit, Priority: loadshed.Sheddable},
			func(t *testing.T, m *Metrics) {
				assert.Equal(t, 1.0, testutil.ToFloat64(m.shed.WithLabelValues("f", "concurrency_limit", "sheddable")))
			}},
		{"canceled", faas.RequestRecord{FunctionID: "f", Canceled: true, Sent: sent},
			func(t *testing.T, m *Metrics) {
				assert.Zero(t, samples(t, m.latency, "f"))
				assert.Zero(t, testutil.ToFloat64(m.billedBy[faas.BilledByAgent]))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(Config{})
			require.NoError(t, err)
			m.ObserveRequest(tt.rec)
			tt.check(t, m)
		})
	}
}

// samples returns the sample count of vec's histogram with labels.
func samples(t *testing.T, vec *prom.HistogramVec, labels ...string) uint64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, vec.WithLabelValues(labels...).(prom.Histogram).Write(&out))
	return out.GetHistogram().GetSampleCount()
}

func TestObserveColdStartInstanceAndRoute(t *testing.T) {
	m, err := New(Config{MaxFunctions: 1})
	require.NoError(t, err)
	m.ObserveColdStart(coldstart.Report{FunctionID: "f", Breakdown: coldstart.Breakdown{Take: time.Millisecond, Total: 5 * time.Millisecond, CacheHit: true}})
	m.ObserveColdStart(coldstart.Report{FunctionID: "g", Breakdown: coldstart.Breakdown{Total: time.Millisecond}})
	m.ObserveColdStart(coldstart.Report{FunctionID: "f", Err: &coldstart.StepError{Step: coldstart.StepInit, Err: errors.New("boom")}})
	m.ObserveColdStart(coldstart.Report{FunctionID: "f", Err: errors.New("no step")})
	assert.Equal(t, 1.0, testutil.ToFloat64(m.codeCache.WithLabelValues("node", "hit")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.codeCache.WithLabelValues("node", "miss")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.coldFailures.WithLabelValues("f", "init")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.coldFailures.WithLabelValues("f", "unknown")))
	assert.Equal(t, 12, testutil.CollectAndCount(m.coldStep), "six steps for f and six for the folded g")

	m.ObserveInstance(nil, lifecycle.Transition{From: lifecycle.Loaded, To: lifecycle.Ready})
	m.ObserveRoute(router.Event{Kind: router.RouteEjected, Cause: router.CauseBreaker})
	assert.Equal(t, 1.0, testutil.ToFloat64(m.transitions.WithLabelValues("ready")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.routeEvents.WithLabelValues("ejected", "breaker")))
}
