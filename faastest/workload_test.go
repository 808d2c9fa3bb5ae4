package faastest

import (
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sorted(t *testing.T, as []Arrival) {
	t.Helper()
	require.True(t, slices.IsSortedFunc(as, func(a, b Arrival) int { return int(a.At - b.At) }), "arrivals out of order")
}

func TestPoissonRateAndDeterminism(t *testing.T) {
	const rate, dur = 50.0, 200 * time.Second
	a := Collect(Poisson("f", rate, dur, 7), 0)
	b := Collect(Poisson("f", rate, dur, 7), 0)
	c := Collect(Poisson("f", rate, dur, 8), 0)
	require.Equal(t, a, b, "same seed, same arrivals")
	require.NotEqual(t, a, c, "another seed, other arrivals")
	sorted(t, a)
	want := rate * dur.Seconds()
	assert.InDelta(t, want, float64(len(a)), 5*math.Sqrt(want), "count within 5 sigma")
	for _, x := range a {
		require.Less(t, x.At, dur)
		require.Equal(t, "f", x.Function)
	}
	// Exponential gaps: coefficient of variation close to 1.
	var sum, sq float64
	for i := 1; i < len(a); i++ {
		g := (a[i].At - a[i-1].At).Seconds()
		sum += g
		sq += g * g
	}
	n := float64(len(a) - 1)
	mean := sum / n
	cv := math.Sqrt(sq/n-mean*mean) / mean
	assert.InDelta(t, 1, cv, 0.05)
}

func TestOnOffConcentratesTrafficInOnPeriods(t *testing.T) {
	a := Collect(OnOff("f", 100, 1, 10*time.Second, 50*time.Second, 600*time.Second, 1), 0)
	sorted(t, a)
	var on, off int
	for _, x := range a {
		if x.At%(60*time.Second) < 10*time.Second {
			on++
		} else {
			off++
		}
	}
	assert.InDelta(t, 100*10*10, on, 5*math.Sqrt(10000))
	assert.InDelta(t, 1*50*10, off, 5*math.Sqrt(500))
}

func TestDiurnalPeakAndTrough(t *testing.T) {
	period := 100 * time.Second
	a := Collect(Diurnal("f", 20, 0.9, period, 20*period, 3), 0)
	sorted(t, a)
	var peak, trough int
	for _, x := range a {
		phase := x.At % period
		switch {
		case phase >= 20*time.Second && phase < 30*time.Second: // around sin max
			peak++
		case phase >= 70*time.Second && phase < 80*time.Second: // around sin min
			trough++
		}
	}
	assert.Greater(t, peak, 5*trough, "peak %d trough %d", peak, trough)
	assert.InDelta(t, 20*2000, len(a), 5*math.Sqrt(40000))
}

func TestMergeOrdersByTime(t *testing.T) {
	w := Merge(Poisson("a", 10, time.Minute, 1), Poisson("b", 20, time.Minute, 2), Slice(nil))
	a := Collect(w, 0)
	sorted(t, a)
	counts := map[string]int{}
	for _, x := range a {
		counts[x.Function]++
	}
	assert.Equal(t, len(Collect(Poisson("a", 10, time.Minute, 1), 0)), counts["a"])
	assert.Equal(t, len(Collect(Poisson("b", 20, time.Minute, 2), 0)), counts["b"])
	assert.Len(t, Collect(Merge(), 0), 0)
	assert.Len(t, Collect(Poisson("x", 0, time.Minute, 1), 0), 0)
	assert.Len(t, Collect(Poisson("x", 100, time.Minute, 1), 5), 5)
}

func TestPopulationIsHeavyTailedLikeAzure(t *testing.T) {
	fns, w := Population(PopulationConfig{Functions: 1000, Duration: time.Hour, Seed: 42})
	require.Len(t, fns, 1000)
	rates := make([]float64, len(fns))
	for i, f := range fns {
		rates[i] = f.PerSecond
	}
	sort.Float64s(rates)
	lessThanPerMinute := sort.SearchFloat64s(rates, 1.0/60)
	t.Logf("functions below 1/min: %d/1000; slowest %.2g/s, busiest %.2g/s", lessThanPerMinute, rates[0], rates[len(rates)-1])
	assert.Greater(t, lessThanPerMinute, 500, "most functions run less than once a minute")
	assert.Greater(t, rates[len(rates)-1]/rates[0], 1e4, "rates span many orders of magnitude")

	arr := Collect(w, 0)
	sorted(t, arr)
	per := map[string]int{}
	for _, a := range arr {
		per[a.Function]++
	}
	counts := make([]int, 0, len(per))
	for _, c := range per {
		counts = append(counts, c)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(counts)))
	top := 0
	for _, c := range counts[:100] {
		top += c
	}
	share := float64(top) / float64(len(arr))
	t.Logf("%d invocations; top 10%% of functions take %.1f%%", len(arr), 100*share)
	assert.Greater(t, share, 0.9, "a few functions take almost all invocations")

	_, w2 := Population(PopulationConfig{Functions: 1000, Duration: time.Hour, Seed: 42})
	assert.Equal(t, arr[:1000], Collect(w2, 1000), "deterministic")
}

func TestPopulationTimerShare(t *testing.T) {
	fns, _ := Population(PopulationConfig{Functions: 200, TimerShare: -1, Seed: 1})
	for _, f := range fns {
		require.False(t, f.Timer)
	}
	fns, _ = Population(PopulationConfig{Functions: 200, TimerShare: 1, Seed: 1})
	for _, f := range fns {
		require.True(t, f.Timer)
		require.GreaterOrEqual(t, 1/f.PerSecond, 60.0-1e-9, "timers fire at most once a minute")
	}
}

// Regression: a low median rate and a wide sigma made timer periods
// overflow time.Duration (Int64N panicked on a negative period), and a
// tiny Poisson rate put its first arrival at −2,562,047 h.
func TestGeneratorsDoNotOverflow(t *testing.T) {
	check := func(name string, w Workload, duration time.Duration) int {
		t.Helper()
		prev := time.Duration(0)
		n := 0
		for a, ok := w.Next(); ok; a, ok = w.Next() {
			require.GreaterOrEqual(t, a.At, prev, name)
			require.Less(t, a.At, duration, name)
			prev = a.At
			n++
		}
		return n
	}
	require.NotPanics(t, func() {
		fns, w := Population(PopulationConfig{Functions: 100_000, MedianPerMinute: 0.002, Duration: time.Hour, Seed: 1})
		require.Len(t, fns, 100_000)
		for _, f := range fns {
			require.False(t, math.IsNaN(f.PerSecond) || f.PerSecond < 0, f.Function)
		}
		assert.Positive(t, check("median 0.002", Limit(w, 20_000), time.Hour))
	})
	require.NotPanics(t, func() {
		_, w := Population(PopulationConfig{Functions: 2000, Sigma: 6, Duration: time.Hour, Seed: 2})
		assert.Positive(t, check("sigma 6", Limit(w, 20_000), time.Hour))
	})
	assert.Zero(t, check("Poisson 1e-11", Poisson("f", 1e-11, 100*time.Hour, 1), 100*time.Hour), "the first arrival is 3e18 s away")
	assert.Zero(t, check("Poisson 1e-11, forever", Poisson("f", 1e-11, math.MaxInt64, 1), math.MaxInt64))
	assert.Equal(t, 1, check("period past the end", Periodic("f", math.MaxInt64, time.Hour, math.MaxInt64-1), math.MaxInt64-1))
	assert.Equal(t, 3, check("negative phase", Periodic("f", time.Minute, -time.Hour, 3*time.Minute), 3*time.Minute))
	assert.Positive(t, check("diurnal with no period", Diurnal("f", 10, 0.5, 0, time.Minute, 1), time.Minute))
}

// fuzzWorkload checks what every generator promises: arrivals in order,
// within [0, duration), of the right function.
func fuzzWorkload(t *testing.T, w Workload, fn string, duration time.Duration) {
	prev := time.Duration(-1)
	for range 20_000 {
		a, ok := w.Next()
		if !ok {
			return
		}
		if a.At < prev || a.At < 0 || a.At >= duration || (fn != "" && a.Function != fn) {
			t.Fatalf("arrival %+v after %v (duration %v)", a, prev, duration)
		}
		prev = a.At
	}
}

func FuzzGenerators(f *testing.F) {
	f.Add(1e-11, 0.5, int64(time.Hour), int64(time.Minute), int64(time.Minute), uint64(1))
	f.Add(50.0, 2.0, int64(0), int64(time.Second), int64(-time.Second), uint64(2))
	f.Add(math.Inf(1), math.NaN(), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MinInt64), uint64(3))
	f.Fuzz(func(t *testing.T, rate, amplitude float64, duration, period, phase int64, seed uint64) {
		d := time.Duration(duration)
		rate = math.Min(rate, 1e4) // bound the arrivals one case yields
		fuzzWorkload(t, Poisson("p", rate, d, seed), "p", d)
		fuzzWorkload(t, Diurnal("d", rate, amplitude, time.Duration(period), d, seed), "d", d)
		fuzzWorkload(t, OnOff("o", rate, rate/2, time.Duration(period), time.Duration(phase), d, seed), "o", d)
		fuzzWorkload(t, Periodic("t", time.Duration(period), time.Duration(phase), d), "t", d)
	})
}

func FuzzPopulation(f *testing.F) {
	f.Add(100, 0.002, 6.0, 0.3, 200.0, int64(time.Hour), uint64(1))
	f.Add(10, 1e-300, 1e300, math.NaN(), math.Inf(1), int64(-1), uint64(2))
	f.Add(50, math.Inf(1), math.NaN(), 2.0, 1e-300, int64(math.MaxInt64), uint64(3))
	f.Fuzz(func(t *testing.T, functions int, median, sigma, timerShare, maxPerSecond float64, duration int64, seed uint64) {
		cfg := PopulationConfig{
			Functions: min(max(functions, -1), 200), MedianPerMinute: median, Sigma: sigma,
			TimerShare: timerShare, MaxPerSecond: math.Min(maxPerSecond, 1e4), Duration: time.Duration(duration), Seed: seed,
		}
		fns, w := Population(cfg)
		for _, fr := range fns {
			if !(fr.PerSecond >= 0) || math.IsInf(fr.PerSecond, 0) {
				t.Fatalf("rate %v of %s", fr.PerSecond, fr.Function)
			}
		}
		d := cfg.withDefaults().Duration
		fuzzWorkload(t, w, "", d)
	})
}
