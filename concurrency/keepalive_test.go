package concurrency

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func idleObs(instances int, lastActive time.Duration) Observation {
	return Observation{Instances: instances, InstanceLimit: 10, LastActive: at(lastActive)}
}

func TestKeepAliveDecisions(t *testing.T) {
	s := time.Second
	tests := []struct {
		name      string
		keepAlive time.Duration
		min       int
		o         Observation
		now       time.Duration
		want      int
	}{
		{"busy: scales on demand", 6 * s, 0, Observation{Instances: 1, InstanceLimit: 10, InFlight: 30, StableConcurrency: 30, PanicConcurrency: 30}, 10 * s, 5},
		{"idle within the keep-alive", 6 * s, 0, idleObs(1, 100*s), 105 * s, 1},
		{"idle past the keep-alive, whatever the averages", 6 * s, 0, Observation{Instances: 1, InstanceLimit: 10, StableConcurrency: 3, LastActive: at(100 * s)}, 107 * s, 0},
		{"exactly at the keep-alive", 6 * s, 0, idleObs(1, 100*s), 106 * s, 0},
		{"no keep-alive", -1, 0, idleObs(1, 100*s), 100 * s, 0},
		{"the floor stays", 6 * s, 2, idleObs(2, 0), time.Hour, 2},
		{"no instance, idle: none started", time.Hour, 0, idleObs(0, 100*s), 200 * s, 0},
		{"never active: from the first decision", 10 * s, 0, Observation{Instances: 1, InstanceLimit: 10}, 5 * s, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewKeepAlive(KeepAliveConfig{KeepAlive: tt.keepAlive, KPA: KPAConfig{MinInstances: tt.min}})
			require.NoError(t, err)
			p.Decide(at(0), idleObs(tt.o.Instances, 0)) // the first decision
			assert.Equal(t, tt.want, p.Decide(at(tt.now), tt.o).Desired)
		})
	}
	p, err := NewKeepAlive(KeepAliveConfig{})
	require.NoError(t, err)
	assert.Equal(t, DefaultKeepAlive, p.Duration())
	_, err = NewKeepAlive(KeepAliveConfig{KPA: KPAConfig{TargetUtilization: 3}})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// TestKeepAliveShorterThanTheMeter: the KPA keeps an instance while the
// 60 s average is above zero, so a 6 s keep-alive lasts a minute; this
// policy's lasts 6 s.
func TestKeepAliveShorterThanTheMeter(t *testing.T) {
	m, _ := NewMeter(MeterConfig{})
	kpa, _ := NewKPA(KPAConfig{KeepAlive: 6 * time.Second})
	fixed, _ := NewKeepAlive(KeepAliveConfig{KeepAlive: 6 * time.Second})
	m.Observe(at(0), 1)
	m.Observe(at(time.Second), 0)
	now := at(10 * time.Second)
	o := m.Observation(now)
	o.Instances, o.InstanceLimit = 1, 10
	assert.Equal(t, 1, kpa.Decide(now, o).Desired, "the KPA: the average remembers the request")
	assert.Equal(t, 0, fixed.Decide(now, o).Desired, "the fixed keep-alive: 9 s idle, gone")
}

func TestHybridDecisions(t *testing.T) {
	m := time.Minute
	// An idle time of 20 minutes, seen four times.
	periodic := func(t *testing.T, cfg HybridConfig) (*Hybrid, time.Time) {
		p, err := NewHybrid(cfg)
		require.NoError(t, err)
		var last time.Time
		for k := range 5 {
			last = at(time.Hour + time.Duration(k)*20*m) // the zero time means never active
			p.Decide(last, Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: last})
			p.Decide(last.Add(2*time.Second), idleObs(1, last.Sub(t0)))
		}
		return p, last
	}
	p, last := periodic(t, HybridConfig{})
	binned, oob := p.Samples()
	assert.EqualValues(t, 4, binned)
	assert.Zero(t, oob)
	pre, end, ok := p.Windows()
	require.True(t, ok, "four equal idle times: representative")
	assert.Equal(t, 18*m, pre, "the head's bin start, less 10 %")
	assert.Equal(t, 23*m+6*time.Second, end, "the tail's bin end, plus 10 %")
	tests := []struct {
		name  string
		idle  time.Duration
		insts int
		want  int
	}{
		{"unloaded right after the call", 30 * time.Second, 1, 0},
		{"still unloaded", 17 * m, 0, 0},
		{"pre-warmed ahead of the next call", 18 * m, 0, 1},
		{"kept through the window", 23 * m, 1, 1},
		{"given up past the keep-alive", 24 * m, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := idleObs(tt.insts, last.Sub(t0))
			assert.Equal(t, tt.want, p.Decide(last.Add(tt.idle), o).Desired)
		})
	}

	// Too few idle times, or too many out of bounds: the fixed fallback.
	q, err := NewHybrid(HybridConfig{Fallback: 10 * m, MinSamples: 3})
	require.NoError(t, err)
	q.Decide(at(time.Hour), Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: at(time.Hour)})
	q.Decide(at(time.Hour+time.Second), idleObs(1, time.Hour))
	q.Decide(at(5*time.Hour), Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: at(5 * time.Hour)})
	q.Decide(at(5*time.Hour+time.Second), idleObs(1, 5*time.Hour))
	_, oob = q.Samples()
	assert.EqualValues(t, 1, oob, "4 h is the range: out of bounds")
	_, _, ok = q.Windows()
	assert.False(t, ok)
	assert.Equal(t, 1, q.Decide(at(5*time.Hour+9*m), idleObs(1, 5*time.Hour)).Desired, "fallback keep-alive")
	assert.Equal(t, 0, q.Decide(at(5*time.Hour+11*m), idleObs(1, 5*time.Hour)).Desired, "past it")

	// A flat histogram is not representative.
	flat, err := NewHybrid(HybridConfig{Range: 10 * m, Bin: m, MinSamples: 1})
	require.NoError(t, err)
	now := at(time.Hour)
	for k := range 20 {
		now = now.Add(time.Duration(k%10)*m + 30*time.Second)
		flat.Decide(now, Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: now})
		now = now.Add(time.Second)
		flat.Decide(now, idleObs(1, now.Add(-time.Second).Sub(t0)))
	}
	_, _, ok = flat.Windows()
	assert.False(t, ok, "idle times spread evenly over every bin: CV 0")

	for _, cfg := range []HybridConfig{
		{Range: time.Minute, Bin: time.Hour},
		{Head: 99, Tail: 5},
		{Tail: 100},
		{Margin: 1},
		{MaxOOB: 2},
		{Range: 100 * time.Hour, Bin: time.Second},
		{KPA: KPAConfig{MinInstances: -1}},
	} {
		_, err := NewHybrid(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

// TestQuietPromisesHold checks every Quiet policy against its own
// promise: after a decision with no demand, Decide at every later round
// before the promised time returns the same answer, on a meter whose
// averages fall as the Meter's do.
func TestQuietPromisesHold(t *testing.T) {
	policies := map[string]func() (ScalingPolicy, error){
		"kpa":        func() (ScalingPolicy, error) { return NewKPA(KPAConfig{KeepAlive: 3 * time.Minute}) },
		"kpa-min":    func() (ScalingPolicy, error) { return NewKPA(KPAConfig{MinInstances: 2}) },
		"kpa-none":   func() (ScalingPolicy, error) { return NewKPA(KPAConfig{KeepAlive: -1}) },
		"keep-alive": func() (ScalingPolicy, error) { return NewKeepAlive(KeepAliveConfig{KeepAlive: 40 * time.Second}) },
		"hybrid": func() (ScalingPolicy, error) {
			return NewHybrid(HybridConfig{Range: 20 * time.Minute, MinSamples: 1, Fallback: 5 * time.Minute})
		},
	}
	for name, mk := range policies {
		t.Run(name, func(t *testing.T) {
			promises := 0
			for seed := range uint64(40) {
				r := rand.New(rand.NewPCG(seed, 3))
				p, err := mk()
				require.NoError(t, err)
				m, _ := NewMeter(MeterConfig{})
				now := at(0)
				instances := 1 + r.IntN(3)
				// Some activity, then silence.
				for range 1 + r.IntN(5) {
					now = now.Add(time.Duration(r.IntN(600)) * time.Second)
					m.Observe(now, 1+r.IntN(20))
					o := m.Observation(now)
					o.Instances, o.InstanceLimit = instances, 10
					p.Decide(now, o)
					now = now.Add(time.Duration(1+r.IntN(5000)) * time.Millisecond)
					m.Observe(now, 0)
				}
				for tick := range 600 {
					now = now.Add(2 * time.Second)
					o := m.Observation(now)
					o.Instances, o.InstanceLimit = instances, 10
					d := p.Decide(now, o)
					until := p.(Quiet).QuietUntil(now, o, d, m.Idle(now))
					if !until.IsZero() && !until.After(now) {
						continue
					}
					promises++
					// The skipped rounds (no activity, so nothing learned):
					// the same answer.
					for k := 1; k < 400; k++ {
						later := now.Add(time.Duration(k) * 2 * time.Second)
						if !until.IsZero() && !later.Before(until) {
							break
						}
						lo := m.Observation(later)
						lo.Instances, lo.InstanceLimit = instances, 10
						require.Equal(t, d.Desired, p.Decide(later, lo).Desired, "seed %d tick %d: promised until %v, changed at %v", seed, tick, until, later)
					}
					break
				}
			}
			assert.Positive(t, promises)
		})
	}
}

func TestMeterIdle(t *testing.T) {
	m, _ := NewMeter(MeterConfig{})
	assert.Equal(t, IdleMeter{Zero: at(0)}, m.Idle(at(0)), "never observed")
	m.Observe(at(0), 10)
	assert.True(t, math.IsInf(m.Idle(at(time.Second)).MaxStable, 1), "a count above zero may still raise the averages")
	// 10 requests for 10 s, then none: the bounds hold at every later
	// read, from wherever they were taken.
	for _, s := range []int{10, 11, 30, 55, 65, 69} {
		m, _ := NewMeter(MeterConfig{})
		m.Observe(at(0), 10)
		m.Observe(at(10*time.Second), 0)
		from := at(time.Duration(s) * time.Second)
		idle := m.Idle(from)
		for k := 0; k < 3000; k++ {
			now := from.Add(time.Duration(k) * 25 * time.Millisecond)
			stable, panic := m.Averages(now)
			require.LessOrEqual(t, stable, idle.MaxStable+1e-12, "from %d s: at %v", s, now.Sub(t0))
			require.LessOrEqual(t, panic, idle.MaxPanic+1e-12, "from %d s: at %v", s, now.Sub(t0))
			if !now.Before(idle.Zero) {
				require.Zero(t, stable, "from %d s: zero from %v on", s, idle.Zero.Sub(t0))
			} else {
				require.Positive(t, stable, "from %d s: above zero until %v", s, idle.Zero.Sub(t0))
			}
		}
	}
	m, _ = NewMeter(MeterConfig{})
	m.Observe(at(0), 10)
	m.Observe(at(10*time.Second), 0)
	assert.Equal(t, at(69*time.Second+1), m.Idle(at(20*time.Second)).Zero, "the bucket [9 s, 10 s) leaves once [69 s, 70 s) is under way")
	assert.Equal(t, IdleMeter{Zero: at(71 * time.Second)}, m.Idle(at(71*time.Second)))
}

func BenchmarkHybridDecide(b *testing.B) {
	p, _ := NewHybrid(HybridConfig{})
	now := at(0)
	for k := range 50 {
		now = now.Add(time.Duration(5+k%7) * time.Minute)
		p.Decide(now, Observation{Instances: 1, InstanceLimit: 10, InFlight: 1, LastActive: now})
		p.Decide(now.Add(time.Second), idleObs(1, now.Sub(t0)))
	}
	o := idleObs(1, now.Sub(t0))
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		p.Decide(now, o)
	}
}
