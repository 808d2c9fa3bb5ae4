package concurrency

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newKPA(t testing.TB, cfg KPAConfig) *KPA {
	t.Helper()
	p, err := NewKPA(cfg)
	require.NoError(t, err)
	return p
}

// TestKPASingleDecisions checks one decision of a fresh policy per row.
func TestKPASingleDecisions(t *testing.T) {
	now := at(time.Hour)
	tests := []struct {
		name string
		cfg  KPAConfig
		obs  Observation
		want Decision
	}{
		{"idle at zero stays at zero", KPAConfig{}, Observation{InstanceLimit: 10}, Decision{}},
		{"a queued request starts one instance", KPAConfig{}, Observation{InstanceLimit: 10, Queued: 1}, Decision{Desired: 1}},
		{"a request in flight keeps one", KPAConfig{}, Observation{InstanceLimit: 10, InFlight: 1}, Decision{Desired: 1}},
		{"steady: ceil(35 / (10 × 0.7))", KPAConfig{},
			Observation{Instances: 5, InstanceLimit: 10, StableConcurrency: 35, PanicConcurrency: 35, InFlight: 35}, Decision{Desired: 5}},
		{"a little over the target adds an instance", KPAConfig{},
			Observation{Instances: 5, InstanceLimit: 10, StableConcurrency: 35.1, PanicConcurrency: 35.1, InFlight: 35}, Decision{Desired: 6}},
		{"exclusive: limit 1", KPAConfig{},
			Observation{Instances: 10, InstanceLimit: 1, StableConcurrency: 7, PanicConcurrency: 7, InFlight: 7}, Decision{Desired: 10}},
		{"limit 0 counts as 1", KPAConfig{},
			Observation{Instances: 10, StableConcurrency: 7, PanicConcurrency: 7, InFlight: 7}, Decision{Desired: 10}},
		{"target utilization 1", KPAConfig{TargetUtilization: 1},
			Observation{Instances: 4, InstanceLimit: 10, StableConcurrency: 35, PanicConcurrency: 35, InFlight: 35}, Decision{Desired: 4}},
		{"scale-down rate: at most halve", KPAConfig{},
			Observation{Instances: 10, InstanceLimit: 10, StableConcurrency: 0.7, PanicConcurrency: 0.7, InFlight: 1}, Decision{Desired: 5}},
		{"panic: the panic window asks for 2× current", KPAConfig{},
			Observation{Instances: 2, InstanceLimit: 10, StableConcurrency: 14, PanicConcurrency: 28, InFlight: 28},
			Decision{Desired: 4, Panicking: true}},
		{"just under the panic threshold", KPAConfig{},
			Observation{Instances: 2, InstanceLimit: 10, StableConcurrency: 14, PanicConcurrency: 20.9, InFlight: 20},
			Decision{Desired: 2}},
		{"scale-up rate bounds a panic", KPAConfig{MaxScaleUpRate: 2},
			Observation{Instances: 2, InstanceLimit: 10, StableConcurrency: 14, PanicConcurrency: 70, InFlight: 70},
			Decision{Desired: 4, Panicking: true}},
		{"min instances", KPAConfig{MinInstances: 3}, Observation{InstanceLimit: 10}, Decision{Desired: 3}},
		{"max instances", KPAConfig{MaxInstances: 4},
			Observation{Instances: 4, InstanceLimit: 10, StableConcurrency: 70, PanicConcurrency: 70, InFlight: 70},
			Decision{Desired: 4, Panicking: true}},
		{"idle within keep-alive keeps one", KPAConfig{},
			Observation{Instances: 1, InstanceLimit: 10, LastActive: now.Add(-5 * time.Minute)}, Decision{Desired: 1}},
		{"idle past keep-alive scales to zero", KPAConfig{},
			Observation{Instances: 1, InstanceLimit: 10, LastActive: now.Add(-11 * time.Minute)}, Decision{}},
		{"no keep-alive", KPAConfig{KeepAlive: -1},
			Observation{Instances: 1, InstanceLimit: 10, LastActive: now.Add(-time.Second)}, Decision{}},
		{"never active: keep-alive counts from the first decision", KPAConfig{},
			Observation{Instances: 1, InstanceLimit: 10}, Decision{Desired: 1}},
		{"negative inputs are harmless", KPAConfig{},
			Observation{Instances: -3, InstanceLimit: -1, StableConcurrency: -1, PanicConcurrency: -1}, Decision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newKPA(t, tt.cfg).Decide(now, tt.obs)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestNewKPAValidates(t *testing.T) {
	for _, cfg := range []KPAConfig{
		{TargetUtilization: 1.5},
		{TargetUtilization: -0.1},
		{PanicThreshold: 0.5},
		{MaxScaleUpRate: 1},
		{MaxScaleDownRate: 0.5},
		{StableWindow: -time.Second},
		{MinInstances: -1},
		{MinInstances: 5, MaxInstances: 2},
	} {
		_, err := NewKPA(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
	p := newKPA(t, KPAConfig{})
	assert.Equal(t, KPAConfig{
		TargetUtilization: 0.7, PanicThreshold: 2, StableWindow: time.Minute,
		MaxScaleUpRate: 1000, MaxScaleDownRate: 2, KeepAlive: 10 * time.Minute,
	}, p.Config())
}

// level is a piece of a demand curve: concurrency c from its start until
// the next level.
type level struct {
	from time.Duration
	c    int
}

type step struct {
	at        time.Duration
	desired   int
	panicking bool
}

// simulate feeds a Meter with the demand curve each second and asks the
// policy every 2 s, as Knative's autoscaler ticks; instances follow the
// decision at once (the scenario tests the policy, not cold starts).
func simulate(t *testing.T, cfg KPAConfig, limit, initial int, curve []level, end time.Duration) []step {
	t.Helper()
	m, err := NewMeter(MeterConfig{})
	require.NoError(t, err)
	p := newKPA(t, cfg)
	instances := initial
	var trace []step
	for now := time.Duration(0); now <= end; now += time.Second {
		c := 0
		for _, l := range curve {
			if now >= l.from {
				c = l.c
			}
		}
		m.Observe(at(now), c)
		if now%(2*time.Second) != 0 {
			continue
		}
		o := m.Observation(at(now))
		o.Instances, o.InstanceLimit = instances, limit
		d := p.Decide(at(now), o)
		instances = d.Desired
		trace = append(trace, step{now, d.Desired, d.Panicking})
	}
	return trace
}

// describe lists the decisions that differ from the previous one.
func describe(trace []step) string {
	var b strings.Builder
	for i, s := range trace {
		if i > 0 && s.desired == trace[i-1].desired && s.panicking == trace[i-1].panicking {
			continue
		}
		fmt.Fprintf(&b, "%v:%d", s.at, s.desired)
		if s.panicking {
			b.WriteString("!")
		}
		b.WriteString(" ")
	}
	return b.String()
}

// TestKPAScenarios drives the default policy through demand curves on
// virtual time (limit 10 per instance, so 7 requests per instance at the
// 0.7 target).
func TestKPAScenarios(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		cfg     KPAConfig
		initial int
		curve   []level
		end     time.Duration
		check   func(t *testing.T, trace []step)
	}{
		{
			name: "steady", initial: 5, curve: []level{{0, 35}}, end: 10 * time.Minute,
			check: func(t *testing.T, trace []step) {
				for _, st := range trace {
					require.Equal(t, step{st.at, 5, false}, st)
				}
			},
		},
		{
			name: "step up: panic from the next decision, the new size within one panic window", initial: 1,
			curve: []level{{0, 7}, {120 * s, 70}}, end: 5 * time.Minute,
			check: func(t *testing.T, trace []step) {
				for _, st := range trace {
					switch {
					case st.at <= 120*s:
						// A count observed at now has held for no time yet.
						require.Equal(t, step{st.at, 1, false}, st, "before the step")
					case st.at == 122*s:
						require.True(t, st.panicking, "the step is seen in the panic window at once")
					case st.at >= 126*s:
						require.Equal(t, 10, st.desired, "70 / 7 at %v", st.at)
					}
					if st.at > 120*s && st.at < 182*s {
						require.True(t, st.panicking, "at %v", st.at)
					}
				}
				// The panic window last asked for ≥ 2× at 122 s (4 instances
				// for 28 → 49 at 124 s is 1.75×), so panic ends at 182 s.
				last := trace[len(trace)-1]
				assert.Equal(t, step{last.at, 10, false}, last, "settled: out of panic at exactly 10")
			},
		},
		{
			name: "burst: up in panic, never down while panicking, then down at most by half",
			cfg:  KPAConfig{}, initial: 2,
			curve: []level{{0, 14}, {100 * s, 140}, {104 * s, 14}}, end: 5 * time.Minute,
			check: func(t *testing.T, trace []step) {
				prev, peak, lastPanic := 0, 0, time.Duration(-1)
				for _, st := range trace {
					if st.panicking {
						require.GreaterOrEqual(t, st.desired, prev, "scaled down while panicking at %v", st.at)
						lastPanic = st.at
					} else if prev > 0 {
						require.GreaterOrEqual(t, st.desired, prev/2, "scaled down faster than the rate at %v", st.at)
					}
					prev, peak = st.desired, max(peak, st.desired)
				}
				// The 4 s burst fills at most 4/6 of the panic window:
				// (2×14 + 4×140) / 6 = 98 → 14 instances.
				assert.Equal(t, 14, peak)
				// The threshold was last crossed at 102 s (8 wanted for 2),
				// so the last panicking decision is at 160 s.
				assert.Equal(t, 160*s, lastPanic)
				assert.Equal(t, 2, trace[len(trace)-1].desired)
			},
		},
		{
			name: "decay to zero only after the keep-alive", initial: 1,
			curve: []level{{0, 7}, {60 * s, 0}}, end: 15 * time.Minute,
			check: func(t *testing.T, trace []step) {
				idle := 60 * s
				for _, st := range trace {
					if st.at < idle+10*time.Minute {
						require.Equal(t, 1, st.desired, "scaled to zero at %v, before the keep-alive", st.at)
					} else {
						require.Equal(t, 0, st.desired, "still up at %v", st.at)
					}
					require.False(t, st.panicking)
				}
			},
		},
		{
			name: "custom keep-alive and a floor", cfg: KPAConfig{KeepAlive: 30 * s, MinInstances: 1}, initial: 1,
			curve: []level{{0, 7}, {60 * s, 0}}, end: 5 * time.Minute,
			check: func(t *testing.T, trace []step) {
				for _, st := range trace {
					require.Equal(t, 1, st.desired, "MinInstances 1 never scales to zero")
				}
			},
		},
		{
			name: "from zero: requests in flight get an instance at once, then panic up", initial: 0,
			curve: []level{{0, 0}, {30 * s, 21}}, end: 3 * time.Minute,
			check: func(t *testing.T, trace []step) {
				want := map[time.Duration]step{
					28 * s: {28 * s, 0, false},
					30 * s: {30 * s, 1, false}, // averages still 0; in flight forces one
					34 * s: {34 * s, 2, true},  // panic window 14 → 2, 2× the 1 instance
					36 * s: {36 * s, 3, true},  // panic window 21 → 3
				}
				for _, st := range trace {
					if w, ok := want[st.at]; ok {
						require.Equal(t, w, st)
					}
				}
				assert.Equal(t, 3, trace[len(trace)-1].desired)
				assert.False(t, trace[len(trace)-1].panicking)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trace := simulate(t, tt.cfg, 10, tt.initial, tt.curve, tt.end)
			t.Log(describe(trace))
			tt.check(t, trace)
		})
	}
}

// TestKPAPanicEnterLeave pins the panic state machine: it enters when the
// panic window asks for ≥ 2× the instances, stays while it does, and
// leaves exactly StableWindow after the last decision over the threshold.
func TestKPAPanicEnterLeave(t *testing.T) {
	p := newKPA(t, KPAConfig{StableWindow: 10 * time.Second})
	over := Observation{Instances: 2, InstanceLimit: 10, StableConcurrency: 14, PanicConcurrency: 28, InFlight: 28}
	calm := Observation{Instances: 4, InstanceLimit: 10, StableConcurrency: 14, PanicConcurrency: 14, InFlight: 14}
	steps := []struct {
		at        time.Duration
		o         Observation
		want      int
		panicking bool
	}{
		{0, calm, 2, false},
		{2 * time.Second, over, 4, true},   // enters
		{4 * time.Second, calm, 4, true},   // holds its peak: never down while panicking
		{10 * time.Second, calm, 4, true},  // 8 s after the last crossing
		{12 * time.Second, calm, 2, false}, // 10 s: leaves, follows the stable window
		{14 * time.Second, over, 4, true},  // enters again
		{20 * time.Second, over, 4, true},  // still over: the timer restarts
		{29 * time.Second, calm, 4, true},  // 9 s after the last crossing
		{30 * time.Second, calm, 2, false}, // leaves
		{32 * time.Second, calm, 2, false}, // stays calm
		{34 * time.Second, Observation{Instances: 2, InstanceLimit: 10, PanicConcurrency: 100}, 15, true},
	}
	for _, st := range steps {
		d := p.Decide(at(st.at), st.o)
		require.Equal(t, Decision{Desired: st.want, Panicking: st.panicking}, d, "at %v", st.at)
	}
}
