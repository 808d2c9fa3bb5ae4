package faastest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func population(fns int, d time.Duration, seed uint64) func() Workload {
	return func() Workload {
		_, w := Population(PopulationConfig{Functions: fns, Duration: d, Seed: seed, MaxPerSecond: 10})
		return w
	}
}

func jsonOf(t *testing.T, r *Report) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.WriteJSON(&b))
	return b.Bytes()
}

func TestRunIsDeterministic(t *testing.T) {
	w := population(300, 10*time.Minute, 7)
	cfg := Config{Name: "default", Seed: 11}
	a, err := Run(cfg, w())
	require.NoError(t, err)
	b, err := Run(cfg, w())
	require.NoError(t, err)
	require.Greater(t, a.Total.Invocations, int64(5_000))
	t.Logf("%d invocations, %d cold starts, %d events", a.Total.Invocations, a.Total.ColdStarts, a.Events)
	require.Positive(t, a.Total.ColdStarts)
	assert.Equal(t, string(jsonOf(t, a)), string(jsonOf(t, b)), "same seed, same JSON, byte for byte")

	cfg.Seed = 12
	c, err := Run(cfg, w())
	require.NoError(t, err)
	assert.NotEqual(t, string(jsonOf(t, a)), string(jsonOf(t, c)), "another seed, another run")
	assert.Equal(t, a.Total.Invocations, c.Total.Invocations, "the workload does not depend on the simulator's seed")
}

// sparse returns n functions invoked every period for duration, at
// staggered phases.
func sparse(n int, period, duration time.Duration) Workload {
	ws := make([]Workload, n)
	for i := range ws {
		ws[i] = Periodic(fmt.Sprintf("f%02d", i), period, time.Duration(i)*period/time.Duration(n), duration)
	}
	return Merge(ws...)
}

func TestNoKeepAliveMakesEverySparseInvocationCold(t *testing.T) {
	r, err := Run(Config{Seed: 1, Default: FunctionSpec{KeepAlive: -1}}, sparse(20, 3*time.Minute, time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 400, r.Total.Invocations)
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
	assert.Equal(t, r.Total.Completed, r.Total.ColdInvocations)
	assert.InDelta(t, 1.0, r.Total.ColdStartRatio, 0)
	assert.EqualValues(t, 400, r.Total.ColdStarts, "one instance per invocation")
	assert.GreaterOrEqual(t, r.Total.Terminated, int64(400-20), "each scaled to zero before the next call")
}

func TestInfiniteKeepAliveStartsEachInstanceOnce(t *testing.T) {
	for _, w := range []Workload{
		sparse(20, 3*time.Minute, time.Hour),
		Merge(Poisson("p1", 0.01, 5*time.Hour, 1), Poisson("p2", 0.002, 5*time.Hour, 2)),
	} {
		r, err := Run(Config{Seed: 1, Default: FunctionSpec{KeepAlive: 1000 * time.Hour}}, w)
		require.NoError(t, err)
		n := int64(len(r.Functions))
		assert.Equal(t, r.Total.Invocations, r.Total.Completed)
		assert.Equal(t, n, r.Total.ColdStarts, "one instance per function, started once")
		assert.Equal(t, n, r.Total.ColdInvocations, "only each instance's first invocation is cold")
		assert.Zero(t, r.Total.Terminated)
		for _, f := range r.Functions {
			assert.EqualValues(t, 1, f.ColdInvocations, f.ID)
		}
	}
}

// Counting wrappers show that the simulator calls the policies it is
// given.
type countingPolicy struct {
	router.Policy
	pickers, picks *int
}

func (p countingPolicy) NewPicker(c []router.Candidate) router.Picker {
	*p.pickers++
	return countingPicker{p.Policy.NewPicker(c), p.picks}
}

type countingPicker struct {
	router.Picker
	picks *int
}

func (p countingPicker) Pick(src rand.Source) int { *p.picks++; return p.Picker.Pick(src) }

type countingScaler struct {
	concurrency.ScalingPolicy
	decisions *int
}

func (s countingScaler) Decide(now time.Time, o concurrency.Observation) concurrency.Decision {
	*s.decisions++
	return s.ScalingPolicy.Decide(now, o)
}

type countingSizing struct {
	warmpool.SizingPolicy
	takes, creates *int
}

func (s countingSizing) ObserveTake(now time.Time) { *s.takes++; s.SizingPolicy.ObserveTake(now) }
func (s countingSizing) ObserveCreate(now time.Time, d time.Duration) {
	*s.creates++
	s.SizingPolicy.ObserveCreate(now, d)
}

func TestRunCallsTheConfiguredPolicies(t *testing.T) {
	var pickers, picks, decisions, takes, creates, shedders int
	cfg := Config{
		Seed:   1,
		Policy: countingPolicy{router.P2C(), &pickers, &picks},
		Scaler: func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
			p, err := KPAFor(fn)
			return countingScaler{p, &decisions}, err
		},
		Sizing: func(rt string, rc warmpool.RuntimeConfig) (warmpool.SizingPolicy, error) {
			p, err := EWMASizingFor(rt, rc)
			return countingSizing{p, &takes, &creates}, err
		},
		Shedder: func() (*loadshed.Shedder, error) {
			shedders++
			return loadshed.New(loadshed.Config{Capacity: 4, Burst: -1})
		},
	}
	r, err := Run(cfg, Merge(Poisson("a", 200, time.Minute, 1), Poisson("b", 5, time.Minute, 2)))
	require.NoError(t, err)
	assert.Equal(t, 1, shedders)
	assert.Positive(t, pickers, "the router built pickers from the policy")
	assert.GreaterOrEqual(t, picks, int(r.Total.Completed)/2, "most requests were picked by the policy, the rest handed off")
	assert.GreaterOrEqual(t, decisions, 2*30, "every function decided at every tick")
	assert.EqualValues(t, r.Pools[0].Taken, takes)
	assert.EqualValues(t, r.Pools[0].Created, creates)
	assert.Positive(t, r.Total.Shed, "a shedder with a capacity of 4 refuses some of 20 requests in flight")
	assert.Equal(t, r.Total.Invocations, r.Total.Completed+r.Total.Shed+r.Total.QueueFull+r.Total.TimedOut)
}

func TestQueueTimeoutAndQueueFull(t *testing.T) {
	slow := Config{
		Seed:       1,
		NoShedding: true,
		Functions:  []FunctionSpec{{ID: "f", QueueTimeout: time.Second, MaxQueue: 5, Init: Const(10 * time.Second)}},
	}
	arr := make([]Arrival, 8)
	for i := range arr {
		arr[i] = Arrival{At: time.Duration(i) * time.Millisecond, Function: "f"}
	}
	r, err := Run(slow, Slice(arr))
	require.NoError(t, err)
	f, ok := r.Function("f")
	require.True(t, ok)
	assert.EqualValues(t, 8, f.Invocations)
	assert.EqualValues(t, 3, f.QueueFull, "five wait, three more are refused")
	assert.EqualValues(t, 5, f.TimedOut, "a 10 s init outlasts the 1 s queue timeout")
	assert.Zero(t, f.Completed)
	assert.InDelta(t, 1.0, f.FailedRatio, 1e-9)
	assert.Positive(t, f.ColdStarts, "the cold start still completes")
}

func TestParallelismQueuesInsideTheInstance(t *testing.T) {
	cfg := instant(1, FunctionSpec{ID: "f", Service: Const(time.Second), Concurrency: 3, Parallelism: 1, MinInstances: 1, MaxInstances: 1})
	arr := []Arrival{{At: time.Second, Function: "f"}, {At: time.Second, Function: "f"}, {At: time.Second, Function: "f"}}
	r, err := Run(cfg, Slice(arr))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, r.Total.Latency.Mean, "they wait 0, 1 and 2 service times")
	assert.Equal(t, 3*time.Second, r.Total.Latency.Max, "the third waits two")
	assert.Equal(t, time.Second, r.Total.QueueTime.Mean)
	assert.Zero(t, r.Total.ColdInvocations, "the instance was Ready before they came")
}

func TestWarmUpAndUntil(t *testing.T) {
	w := func() Workload { return Periodic("f", time.Minute, 0, 10*time.Minute) }
	base, err := Run(Config{Seed: 1}, w())
	require.NoError(t, err)
	warm, err := Run(Config{Seed: 1, WarmUp: 5*time.Minute + time.Second}, w())
	require.NoError(t, err)
	long, err := Run(Config{Seed: 1, Until: time.Hour}, w())
	require.NoError(t, err)

	assert.EqualValues(t, 10, base.Total.Invocations)
	assert.EqualValues(t, 1, base.Total.ColdInvocations)
	assert.EqualValues(t, 4, warm.Total.Invocations, "those at 6..9 min")
	assert.Zero(t, warm.Total.ColdInvocations, "the cold one came during the warm-up")
	assert.Less(t, warm.Total.InstanceSeconds, base.Total.InstanceSeconds/2+60)
	assert.Equal(t, time.Hour, long.Duration)
	assert.EqualValues(t, 1, long.Total.Terminated, "scaled to zero after the keep-alive")
	// Alive from the first cold start until the keep-alive ran out after
	// the last call (9 min + 10 min, decided on the next 2 s tick).
	assert.InDelta(t, 19*60, long.Total.InstanceSeconds, 5)
	assert.Greater(t, long.Total.IdleInstanceSeconds, 0.95*long.Total.InstanceSeconds)
}

func TestCodeComesFromTheNearestTier(t *testing.T) {
	cfg := Config{Seed: 1, Code: CodeConfig{Nodes: 1}, Default: FunctionSpec{KeepAlive: -1}}
	r, err := Run(cfg, Merge(Periodic("a", 5*time.Minute, 0, time.Hour), Periodic("b", 5*time.Minute, time.Minute, time.Hour)))
	require.NoError(t, err)
	cs := r.Total.ColdStart
	assert.EqualValues(t, 24, r.Total.ColdStarts)
	assert.EqualValues(t, 2, cs.OriginFetches, "each package once from the origin")
	assert.EqualValues(t, 22, cs.LocalFetches, "then from the node's cache")
	assert.Zero(t, cs.SharedFetches)

	cfg.Code.NodeCacheBytes = DefaultCodeSize // room for one package: a and b evict each other
	r, err = Run(cfg, Merge(Periodic("a", 5*time.Minute, 0, time.Hour), Periodic("b", 5*time.Minute, time.Minute, time.Hour)))
	require.NoError(t, err)
	cs = r.Total.ColdStart
	assert.EqualValues(t, 2, cs.OriginFetches)
	assert.EqualValues(t, 22, cs.SharedFetches, "evicted from the node, still in the shared cache")
	assert.Positive(t, cs.Fetch)
	assert.Greater(t, cs.Mean, cs.Fetch+cs.Load)
}

func TestScaleUpAndDown(t *testing.T) {
	// A burst of 100/s of 1 s requests needs about 100/(10 × 0.7) ≈ 15
	// instances; once it stops they drain back to one, then to none
	// after the keep-alive.
	w := OnOff("f", 100, 0, time.Minute, time.Hour, time.Minute, 3)
	r, err := Run(Config{Seed: 1, NoShedding: true, Until: 15 * time.Minute, Default: FunctionSpec{Service: Const(time.Second)}}, w)
	require.NoError(t, err)
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
	assert.GreaterOrEqual(t, r.Total.PeakInstances, 12)
	assert.LessOrEqual(t, r.Total.PeakInstances, 40)
	assert.Equal(t, r.Total.ColdStarts, r.Total.Terminated, "every instance was scaled down")
	last := r.Timeline[len(r.Timeline)-1]
	assert.Zero(t, last.Instances)
	assert.Less(t, r.Total.ColdStartRatio, 0.1)
}

func TestTimelineStaysBounded(t *testing.T) {
	r, err := Run(Config{Seed: 1, SampleEvery: time.Millisecond}, Periodic("f", time.Minute, 0, 30*time.Minute))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(r.Timeline), MaxTimelinePoints)
	assert.Greater(t, len(r.Timeline), MaxTimelinePoints/4)
	assert.Greater(t, r.TimelineStep, 256*time.Millisecond)
	sum := 0
	for i, p := range r.Timeline {
		sum += p.ColdStarts
		if i > 0 {
			require.Greater(t, p.T, r.Timeline[i-1].T)
		}
	}
	assert.EqualValues(t, r.Total.ColdStarts, sum, "merging points keeps every cold start")
}

func TestRunRejectsBadInput(t *testing.T) {
	bad := []Config{
		{ScaleInterval: -1},
		{MaxColdStarts: -1},
		{WarmUp: -time.Second},
		{Runtimes: map[string]RuntimeSpec{"go": {Min: 3, Max: 2}}},
		{Functions: []FunctionSpec{{ID: "f"}, {ID: "f"}}},
		{Functions: []FunctionSpec{{}}},
		{Functions: []FunctionSpec{{ID: "f", Runtime: "nope"}}},
		{Functions: []FunctionSpec{{ID: "f", Concurrency: 2, Parallelism: 3}}},
		{Default: FunctionSpec{MaxQueue: -1}},
		{Scaler: func(FunctionSpec) (concurrency.ScalingPolicy, error) {
			return concurrency.NewKPA(concurrency.KPAConfig{TargetUtilization: 2})
		}},
		{Sizing: func(string, warmpool.RuntimeConfig) (warmpool.SizingPolicy, error) { return nil, errors.New("no") }},
		{Shedder: func() (*loadshed.Shedder, error) { return loadshed.New(loadshed.Config{Interval: -1}) }},
		{Meter: concurrency.MeterConfig{PanicWindow: time.Hour}},
		{Dataplanes: -1},
		{Failures: Failures{InstanceCrashRate: -1}},
		{Failures: Failures{NodeLossRate: math.NaN()}},
		{Speeds: Speeds{Nodes: []float64{1, 0}}},
		{Speeds: Speeds{InstanceSigma: math.Inf(1)}},
		{Default: FunctionSpec{MaxConcurrency: -1}},
		{Default: FunctionSpec{MemoryMB: math.NaN()}},
	}
	for i, cfg := range bad {
		_, err := Run(cfg, Poisson("f", 1, time.Minute, 1))
		assert.ErrorIs(t, err, ErrConfig, "config %d", i)
	}
	_, err := Run(Config{}, Slice([]Arrival{{At: time.Second, Function: "f"}, {At: 0, Function: "f"}}))
	assert.ErrorIs(t, err, ErrWorkload)
	// Regression: the message said "comes after" of an arrival that came
	// before the previous one.
	assert.EqualError(t, err, `faastest: bad workload: arrival for "f" at 0s comes before one at 1s`)
	_, err = Run(Config{}, Slice([]Arrival{{At: time.Second}}))
	assert.ErrorIs(t, err, ErrWorkload, "an arrival without a function")
}

func TestDormantFunctionsDecideLessOften(t *testing.T) {
	count := func(dormant time.Duration) (idle, busy int) {
		cfg := Config{Seed: 1, Until: time.Hour, DormantInterval: dormant,
			Functions: []FunctionSpec{{ID: "idle"}, {ID: "busy"}},
			Scaler: func(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
				p, err := KPAFor(fn)
				if fn.ID == "idle" {
					return countingScaler{p, &idle}, err
				}
				return countingScaler{p, &busy}, err
			}}
		_, err := Run(cfg, Poisson("busy", 1, time.Hour, 1))
		require.NoError(t, err)
		return idle, busy
	}
	idle, busy := count(0)
	assert.Equal(t, 1801, idle, "at start, then every 2 s")
	assert.GreaterOrEqual(t, busy, 1801, "plus the decisions of requests that found no slot")
	idle, busy2 := count(time.Minute)
	assert.Equal(t, 61, idle, "at start, then every minute")
	assert.Equal(t, busy, busy2, "a function with an instance still decides every 2 s")
}
