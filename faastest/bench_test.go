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

// scaleArrivals returns the first 1,000,000 arrivals of a population of
// 1,000 functions (the default median of 0.2 invocations a minute) or of
// 100,000 (a median of 0.002 a minute, so that the million takes the same
// 40 minutes, and 29,471 of the functions are invoked in them).
func scaleArrivals(b *testing.B, functions int) []Arrival {
	b.Helper()
	cfg := PopulationConfig{Functions: functions, Duration: 2 * time.Hour, Seed: 1}
	if functions > 1000 {
		cfg.MedianPerMinute = 0.2 * 1000 / float64(functions)
	}
	_, w := Population(cfg)
	arr := Collect(w, 1_000_000)
	if len(arr) != 1_000_000 {
		b.Fatalf("population gave %d arrivals", len(arr))
	}
	return arr
}

// BenchmarkRunMillionScale is the scale target: 1,000,000 invocations over
// 100,000 functions must cost at most twice the CPU time of the same
// million over 1,000. Both run on a platform sized for their functions
// (ClusterConfig: the 100,000 functions on 10 dataplane nodes, 1,000
// worker nodes), so that no limit decides the outcome (the benchmark
// fails if one does); shedder=off leaves the load shedders out, to
// measure the simulator's own cost.
func BenchmarkRunMillionScale(b *testing.B) {
	for _, fns := range []int{1000, 100_000} {
		arr := scaleArrivals(b, fns)
		for _, shed := range []bool{true, false} {
			b.Run(fmt.Sprintf("functions=%d/shedder=%v", fns, map[bool]string{true: "on", false: "off"}[shed]), func(b *testing.B) {
				cfg := ClusterConfig(fns)
				cfg.Seed, cfg.NoShedding = 1, !shed
				b.ReportAllocs()
				var events int64
				for b.Loop() {
					r, err := Run(cfg, Slice(arr))
					if err != nil {
						b.Fatal(err)
					}
					if d := r.Decided(); len(d) > 0 {
						b.Fatalf("a limit decided the run: %+v", d)
					}
					events += r.Events
				}
				b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(b.N)*1e6/b.Elapsed().Seconds(), "invocations/s")
			})
		}
	}
}

// BenchmarkRunMillionDefaults runs both millions under Config's own
// defaults (one dataplane, 4 pod creations at once, the adaptive shedder),
// with and without the shedder, as the simulator ran them before it had
// ClusterConfig: for the 100,000 functions the limits decide the outcome
// (the shedder refuses most of the million; without it, a storm of cold
// starts queues behind 4 pod creations for two hours of virtual time),
// which the reported limits-decided says.
func BenchmarkRunMillionDefaults(b *testing.B) {
	for _, fns := range []int{1000, 100_000} {
		arr := scaleArrivals(b, fns)
		for _, shed := range []bool{true, false} {
			b.Run(fmt.Sprintf("functions=%d/shedder=%v", fns, map[bool]string{true: "on", false: "off"}[shed]), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					r, err := Run(Config{Seed: 1, NoShedding: !shed}, Slice(arr))
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(100*r.Total.ShedRatio, "%shed")
					b.ReportMetric(100*float64(r.Total.TimedOut)/float64(r.Total.Invocations), "%timed-out")
					b.ReportMetric(float64(len(r.Decided())), "limits-decided")
				}
			})
		}
	}
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
