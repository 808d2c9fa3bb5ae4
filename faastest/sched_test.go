package faastest

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noPromise hides a policy's concurrency.Quiet promises: the simulator
// then asks it at every tick, as it did before functions could sleep.
type noPromise struct{ concurrency.ScalingPolicy }

// TestSleepingChangesNothing is the property the scheduler rests on: a
// function that sleeps on its policy's promise (concurrency.Quiet) gives
// the same run as one asked at every tick, bit for bit, whatever the
// policy (the KPA, a fixed keep-alive, the hybrid histogram), the
// scale-down delay, the failures and the workload.
func TestSleepingChangesNothing(t *testing.T) {
	policies := []func(FunctionSpec) (concurrency.ScalingPolicy, error){
		KPAFor,
		func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
			return concurrency.NewKeepAlive(concurrency.KeepAliveConfig{KeepAlive: []time.Duration{-1, 7 * time.Second, 3 * time.Minute}[fn.MaxQueue%3],
				KPA: concurrency.KPAConfig{MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances}})
		},
		func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
			return concurrency.NewHybrid(concurrency.HybridConfig{Range: 30 * time.Minute, Fallback: 2 * time.Minute, MinSamples: 2,
				KPA: concurrency.KPAConfig{MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances}})
		},
	}
	for seed := range uint64(18) {
		r := newRand(seed + 100)
		var ws []Workload
		var specs []FunctionSpec
		for i := range 2 + r.IntN(10) {
			id := fmt.Sprintf("f%d", i)
			d := time.Duration(5+r.IntN(40)) * time.Minute
			switch r.IntN(4) {
			case 0:
				ws = append(ws, Poisson(id, math.Exp(r.Float64()*7-6), d, r.Uint64()))
			case 1:
				ws = append(ws, OnOff(id, 20*r.Float64(), 0.01, time.Minute, time.Duration(2+r.IntN(8))*time.Minute, d, r.Uint64()))
			default:
				ws = append(ws, Periodic(id, time.Duration(10+r.IntN(600))*time.Second, time.Duration(r.IntN(60))*time.Second, d))
			}
			specs = append(specs, FunctionSpec{
				ID: id, Service: Exp(time.Duration(10+r.IntN(2000)) * time.Millisecond),
				Concurrency: 1 + r.IntN(4), MinInstances: r.IntN(4) / 3, MaxInstances: 1 + r.IntN(8),
				KeepAlive: []time.Duration{-1, 20 * time.Second, 4 * time.Minute}[r.IntN(3)], MaxQueue: r.IntN(50),
			})
		}
		scaler := policies[int(seed)%len(policies)]
		cfg := Config{
			Seed: seed, Functions: specs, Scaler: scaler, NoShedding: r.IntN(2) == 0,
			ScaleDownDelay: []time.Duration{0, 0, 30 * time.Second, 2 * time.Minute}[r.IntN(4)],
			Until:          time.Duration(r.IntN(2)) * time.Hour,
			Dataplanes:     1 + r.IntN(3),
			Code:           CodeConfig{Nodes: 2 + r.IntN(4)},
			Failures:       Failures{InstanceCrashRate: []float64{0, 0, 20}[r.IntN(3)], NodeLossRate: []float64{0, 0, 2}[r.IntN(3)]},
		}
		if r.IntN(3) == 0 {
			cfg.Meter = concurrency.MeterConfig{StableWindow: 20 * time.Second, PanicWindow: 4 * time.Second}
		}
		arrivals := Collect(Merge(ws...), 0)
		asleep, err := Run(cfg, Slice(arrivals))
		require.NoError(t, err, "seed %d", seed)
		cfg.Scaler = func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
			p, err := scaler(fn)
			return noPromise{p}, err
		}
		awake, err := Run(cfg, Slice(arrivals))
		require.NoError(t, err, "seed %d", seed)
		require.Positive(t, asleep.Total.Invocations, "seed %d", seed)
		require.Equal(t, awake.Total, asleep.Total, "seed %d: sleeping changed the totals", seed)
		require.True(t, bytes.Equal(jsonOf(t, awake), jsonOf(t, asleep)), "seed %d: sleeping changed the report", seed)
	}
}

// TestSleepersCostNothing counts the decisions of 2,000 functions called
// once each in an hour: with the KPA's promises the simulator asks each
// of them about 60 times (its 10-minute keep-alive's start and end and
// the minute its average takes to fall to zero), not 1,800 times.
func TestSleepersCostNothing(t *testing.T) {
	var decisions int
	cfg := Config{Seed: 1, NoShedding: true, Until: time.Hour, Scaler: func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
		p, err := KPAFor(fn)
		return countingQuiet{p.(*concurrency.KPA), &decisions}, err
	}}
	var ws []Workload
	for i := range 2000 {
		ws = append(ws, Periodic(fmt.Sprintf("f%04d", i), 0, time.Duration(i)*time.Second, time.Hour))
	}
	r, err := Run(cfg, Merge(ws...))
	require.NoError(t, err)
	require.EqualValues(t, 2000, r.Total.Completed)
	require.EqualValues(t, 2000, r.Total.Terminated, "every instance scaled to zero after its keep-alive")
	perFunction := float64(decisions) / 2000
	t.Logf("%.1f decisions per function (1,801 ticks)", perFunction)
	assert.Less(t, perFunction, 60.0)
	assert.Greater(t, perFunction, 3.0)
}

type countingQuiet struct {
	*concurrency.KPA
	n *int
}

func (c countingQuiet) Decide(now time.Time, o concurrency.Observation) concurrency.Decision {
	*c.n++
	return c.KPA.Decide(now, o)
}
