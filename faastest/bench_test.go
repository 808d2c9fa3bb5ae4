package faastest

import (
	"fmt"
	"testing"
	"time"
)

// million returns the first 1,000,000 arrivals of the default heavy-tailed
// population of 1,000 functions (about 40 minutes of it).
func million(b *testing.B) []Arrival {
	b.Helper()
	_, w := Population(PopulationConfig{Functions: 1000, Duration: 2 * time.Hour, Seed: 1})
	arr := Collect(w, 1_000_000)
	if len(arr) != 1_000_000 {
		b.Fatalf("population gave %d arrivals", len(arr))
	}
	return arr
}

// BenchmarkRunMillion is the speed target of the simulator: 1,000,000
// invocations across 1,000 functions with every default policy (P2C, KPA,
// the adaptive shedder, EWMA pool sizing) in at most 10 s on a 2-core
// machine. One op is one whole run; events/s counts arrivals,
// completions, cold starts, pod creations, timeouts and decision ticks.
func BenchmarkRunMillion(b *testing.B) {
	arr := million(b)
	b.ReportAllocs()
	var events int64
	for b.Loop() {
		r, err := Run(Config{Seed: 1}, Slice(arr))
		if err != nil {
			b.Fatal(err)
		}
		events += r.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)*1e6/b.Elapsed().Seconds(), "invocations/s")
}

// BenchmarkRunMillionWithWorkload includes generating the arrivals: the
// population's 1,000 Poisson and timer streams merged on the fly.
func BenchmarkRunMillionWithWorkload(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, w := Population(PopulationConfig{Functions: 1000, Duration: 2 * time.Hour, Seed: 1})
		if _, err := Run(Config{Seed: 1}, Limit(w, 1_000_000)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*1e6/b.Elapsed().Seconds(), "invocations/s")
}

// BenchmarkRunSteadyState measures the per-invocation cost on the hot path
// (admit, pick, complete, release, meter) of a warm function: one op is one
// invocation.
func BenchmarkRunSteadyState(b *testing.B) {
	for _, fns := range []int{1, 1000} {
		b.Run(fmt.Sprintf("functions=%d", fns), func(b *testing.B) {
			n := max(b.N, 1000)
			arr := make([]Arrival, n)
			for i := range arr {
				arr[i] = Arrival{At: time.Duration(i) * time.Millisecond, Function: fmt.Sprintf("f%d", i%fns)}
			}
			cfg := Config{Seed: 1, NoShedding: true, Default: FunctionSpec{Service: Const(time.Millisecond / 2)}}
			b.ReportAllocs()
			b.ResetTimer()
			if _, err := Run(cfg, Slice(arr[:b.N])); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkHistogramAdd(b *testing.B) {
	var h hist
	r := newRand(1)
	vals := make([]time.Duration, 4096)
	for i := range vals {
		vals[i] = LogNormal(100*time.Millisecond, 1).Sample(r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.add(vals[i&4095])
		i++
	}
}
