package loadshed

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The model's server: 50 servers, 50 ms mean service time, so a capacity
// of 1000 requests per second; clients give up after 2.5 s (about 10× the
// unloaded p99). Fifty servers, not ten: at 0.8× load ten servers often
// hold a queue as deep as themselves for a whole interval, which no
// detector should ignore; a dataplane node runs many more requests at once.
const (
	servers     = 50
	meanService = 50 * time.Millisecond
	capacityRPS = 1000.0
)

func baseModel(load float64, shed *Shedder, seed uint64) model {
	return model{
		servers:  servers,
		service:  meanService,
		duration: 25 * time.Second,
		warmup:   5 * time.Second,
		timeout:  2500 * time.Millisecond,
		seed:     seed,
		streams:  []stream{{caller: "c", rate: constant(load * capacityRPS)}},
		shed:     shed,
	}
}

func newShedder(t testing.TB, cfg Config) *Shedder {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	return s
}

// TestModelOverload is the acceptance test: at 2× and 10× the
// capacity, with the server's in-flight capacity known (100: the 50
// servers and a queue as deep) or learned by the adaptive limit, goodput stays at
// ≥ 90 % of capacity and the p99 latency of admitted requests within 2× the
// unloaded p99; without shedding the same server collapses.
func TestModelOverload(t *testing.T) {
	unloaded := baseModel(0.3, nil, 1).run()
	unloadedP99 := unloaded.p99()
	t.Logf("unloaded (0.3×): p99 %v, goodput %.0f rps", unloadedP99, float64(unloaded.good)/unloaded.seconds)

	configs := []struct {
		name string
		cfg  Config
	}{
		{"capacity 100", Config{Capacity: 100}},
		{"adaptive", Config{}},
	}
	t.Logf("%-14s %5s | %8s %9s %8s | %s", "shedding", "load", "goodput", "p99", "shed", "without shedding: goodput, p99")
	for _, load := range []float64{2, 10} {
		bare := baseModel(load, nil, 2).run()
		for _, c := range configs {
			t.Run(fmt.Sprintf("%s/%gx", c.name, load), func(t *testing.T) {
				s := newShedder(t, c.cfg)
				r := baseModel(load, s, 2).run()
				t.Logf("%-14s %4gx | %7.1f%% %9v %7.1f%% | %5.1f%% %v",
					c.name, load, 100*r.goodput(), r.p99().Round(100*time.Microsecond),
					100*float64(r.shed)/float64(r.offered),
					100*bare.goodput(), bare.p99().Round(time.Millisecond))
				require.GreaterOrEqual(t, r.goodput(), 0.9, "goodput")
				require.LessOrEqual(t, r.p99(), 2*unloadedP99, "p99 of admitted requests")
				require.Less(t, bare.goodput(), 0.1, "without shedding the server should collapse")
				require.Greater(t, bare.p99(), 10*unloadedP99)
			})
		}
	}
}

// TestModelGreedyCaller: nine callers send 80 requests per second each and
// a greedy one 800, ten times as much; together 1.52× the capacity. The
// greedy caller is shed first, and the well-behaved ones keep ≥ 99 %
// success.
func TestModelGreedyCaller(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"capacity 100", Config{Capacity: 100}},
		{"adaptive", Config{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := baseModel(0, newShedder(t, c.cfg), 3)
			m.streams = nil
			for i := range 9 {
				m.streams = append(m.streams, stream{caller: fmt.Sprintf("good-%d", i), rate: constant(80)})
			}
			m.streams = append(m.streams, stream{caller: "greedy", rate: constant(800)})
			r := m.run()
			greedy := r.perCaller["greedy"]
			worst, goodSheds := 1.0, 0
			for i := range 9 {
				g := r.perCaller[fmt.Sprintf("good-%d", i)]
				worst = min(worst, g.success())
				goodSheds += g.shed
			}
			t.Logf("greedy shed for %v; limit %d, fair share %.1f; well-behaved callers shed %d times",
				greedy.reasons, m.shed.Limit(), m.shed.Stats().FairShare, goodSheds)
			t.Logf("well-behaved: worst success %.2f%%; greedy: success %.1f%%, %d of %d sheds; goodput %.1f%%, p99 %v",
				100*worst, 100*greedy.success(), greedy.shed, r.shed, 100*r.goodput(), r.p99().Round(100*time.Microsecond))
			require.GreaterOrEqual(t, worst, 0.99, "a well-behaved caller was shed")
			require.Less(t, greedy.success(), 0.5, "the greedy caller was not held to its share")
			require.GreaterOrEqual(t, float64(greedy.shed), 0.99*float64(r.shed), "sheds should hit the greedy caller")
			require.GreaterOrEqual(t, r.goodput(), 0.9)
		})
	}
}

// TestModelStep: the load steps from 0.8× to 1.4× the capacity for 10 s
// and back. The detector settles (turns on and stays on) within 2 control
// intervals of the step, and turns off again after it ends, within the
// cool-off and a few intervals.
func TestModelStep(t *testing.T) {
	const stepAt, stepEnd = 10 * time.Second, 20 * time.Second
	rate := func(t time.Duration) float64 {
		if t >= stepAt && t < stepEnd {
			return 1.4 * capacityRPS
		}
		return 0.8 * capacityRPS
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"capacity 100", Config{Capacity: 100}},
		{"adaptive", Config{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newShedder(t, c.cfg)
			m := baseModel(0, s, 4)
			m.duration, m.warmup = 30*time.Second, 0
			m.streams = []stream{{caller: "c", rate: rate}}
			m.interval = DefaultInterval
			r := m.run()
			var on, off time.Duration = -1, -1
			flipsDuring := 0
			for i, x := range r.timeline {
				if i > 0 && x.shedding != r.timeline[i-1].shedding && x.at > stepAt && x.at <= stepEnd {
					flipsDuring++
				}
				if on < 0 && x.at > stepAt && x.shedding {
					on = x.at
				}
				if x.at < stepAt {
					require.False(t, x.shedding, "shedding at 0.8× load at %v", x.at)
				}
				if off < 0 && x.at > stepEnd && !x.shedding {
					off = x.at
				}
				if off >= 0 {
					require.False(t, x.shedding, "on again at %v after the step", x.at)
				}
			}
			t.Logf("on %v after the step (%d flips during it), off %v after it ended; %d transitions in all",
				on-stepAt, flipsDuring, off-stepEnd, s.Stats().Transitions)
			require.Positive(t, on, "never turned on")
			require.LessOrEqual(t, on-stepAt, 2*DefaultInterval, "settles within 2 control intervals")
			require.Equal(t, 1, flipsDuring, "turned on once and stayed on")
			require.Positive(t, off, "never turned off")
			require.LessOrEqual(t, off-stepEnd, DefaultCoolOff+5*DefaultInterval)
			require.Equal(t, 2, s.Stats().Transitions)
		})
	}
}

// TestModelSteadyLoadFlipsRarely: at steady loads from half the capacity
// to 10×, the detector flips at most once per cool-off.
func TestModelSteadyLoadFlipsRarely(t *testing.T) {
	for _, load := range []float64{0.5, 0.9, 1.0, 1.1, 1.4, 2, 10} {
		for _, c := range []struct {
			name string
			cfg  Config
		}{
			{"capacity 100", Config{Capacity: 100}},
			{"adaptive", Config{}},
		} {
			s := newShedder(t, c.cfg)
			m := baseModel(load, s, 5)
			m.duration, m.warmup = 10*time.Second, 0
			m.interval = DefaultInterval
			r := m.run()
			perWindow := map[time.Duration]int{}
			for i, x := range r.timeline {
				if i > 0 && x.shedding != r.timeline[i-1].shedding {
					perWindow[x.at/DefaultCoolOff]++
				}
			}
			worst := 0
			for _, n := range perWindow {
				worst = max(worst, n)
			}
			t.Logf("%-12s %4gx: %d transitions in 10 s, at most %d per cool-off", c.name, load, s.Stats().Transitions, worst)
			// A flip on and the flip off take at least a cool-off between
			// them; two in one cool-off window can only be off then on.
			require.LessOrEqual(t, worst, 2, "%s at %gx", c.name, load)
			require.LessOrEqual(t, s.Stats().Transitions, 1+int(m.duration/DefaultCoolOff), "%s at %gx", c.name, load)
		}
	}
}

// TestModelLatencyShift: the function's service time doubles at 20 s
// (the capacity halves to 500 requests per second) under an offered load
// of 1500. The adaptive limit re-measures the no-load latency from the
// traffic itself: no interval sheds much more than the new steady state,
// and goodput stays near the new capacity. Without queueing delays
// reported, the stale minimum crushes the limit until the window forgets
// it; logged for comparison.
func TestModelLatencyShift(t *testing.T) {
	const shiftAt = 20 * time.Second
	run := func(noStarted bool) (*result, *Shedder) {
		s := newShedder(t, Config{})
		m := baseModel(1.5, s, 8)
		m.duration, m.warmup = 60*time.Second, shiftAt
		m.scale = func(t time.Duration) float64 {
			if t >= shiftAt {
				return 2
			}
			return 1
		}
		m.interval = time.Second
		m.noStarted = noStarted
		return m.run(), s
	}
	window := func(r *result, from, to time.Duration) (worstShed float64, minLimit int) {
		minLimit = 1 << 30
		for _, x := range r.timeline {
			if x.at > from && x.at <= to {
				worstShed, minLimit = max(worstShed, x.shedFrac), min(minLimit, x.limit)
			}
		}
		return
	}
	r, s := run(false)
	steadyShed, _ := window(r, 40*time.Second, 60*time.Second)
	worstShed, minLimit := window(r, shiftAt, 40*time.Second)
	goodput := float64(r.good) / r.seconds / (capacityRPS / 2)
	bare, _ := run(true)
	bareShed, bareLimit := window(bare, shiftAt, 40*time.Second)
	t.Logf("after the shift: worst 1 s shed %.0f%% (steady %.0f%%), least limit %d, goodput %.1f%% of the new capacity, no-load %v",
		100*worstShed, 100*steadyShed, minLimit, 100*goodput, s.Stats().NoLoadLatency.Round(time.Millisecond))
	t.Logf("without Started: worst 1 s shed %.0f%%, least limit %d, goodput %.1f%%",
		100*bareShed, bareLimit, 100*float64(bare.good)/bare.seconds/(capacityRPS/2))
	require.LessOrEqual(t, worstShed, steadyShed+0.15, "a burst of rejections while re-measuring")
	require.GreaterOrEqual(t, minLimit, servers/2, "the limit collapsed")
	require.GreaterOrEqual(t, goodput, 0.9)
}

// TestModelPriorities: critical requests alone ask for 1.2× the capacity,
// default ones 0.5× and sheddable ones 1×. Sheddable requests go first,
// then default ones; a critical request is refused only in an interval in
// which no sheddable request was admitted.
func TestModelPriorities(t *testing.T) {
	s := newShedder(t, Config{Capacity: 100})
	m := baseModel(0, s, 9)
	m.streams = []stream{
		{caller: "checkout", priority: Critical, rate: constant(1200)},
		{caller: "browse", priority: Default, rate: constant(500)},
		{caller: "prefetch", priority: Sheddable, rate: constant(1000)},
	}
	type counts struct{ criticalShed, sheddableAdmitted int }
	perInterval := map[time.Duration]*counts{}
	m.onAdmit = func(at time.Duration, st *stream, err error) {
		k := at / DefaultInterval
		c := perInterval[k]
		if c == nil {
			c = &counts{}
			perInterval[k] = c
		}
		if st.priority == Critical && err != nil {
			c.criticalShed++
		}
		if st.priority == Sheddable && err == nil {
			c.sheddableAdmitted++
		}
	}
	r := m.run()
	for k, c := range perInterval {
		if c.criticalShed > 0 {
			require.Zero(t, c.sheddableAdmitted, "interval %d: critical shed while sheddable admitted", k)
		}
	}
	crit, def, shed := r.perPriority[Critical], r.perPriority[Default], r.perPriority[Sheddable]
	t.Logf("success: critical %.1f%%, default %.1f%%, sheddable %.2f%%; goodput %.1f%%, p99 %v",
		100*crit.success(), 100*def.success(), 100*shed.success(), 100*r.goodput(), r.p99().Round(time.Millisecond))
	require.Less(t, shed.success(), 0.01, "sheddable requests should be shed first")
	require.Greater(t, crit.success(), def.success(), "critical requests should be shed last")
	require.GreaterOrEqual(t, r.goodput(), 0.9)
}
