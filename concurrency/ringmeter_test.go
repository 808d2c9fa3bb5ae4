package concurrency

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRingMeterEqualsMeter drives a Meter and a RingMeter with the same
// random observations and reads (bursts, long gaps, repeated and older
// instants, negative counts, counts large enough to leave the range in
// which floating point sums are exact) and requires the same averages and
// observations, bit for bit.
func TestRingMeterEqualsMeter(t *testing.T) {
	configs := []MeterConfig{
		{},
		{StableWindow: 30 * time.Second, PanicWindow: 5 * time.Second},
		{StableWindow: 10 * time.Second, PanicWindow: 10 * time.Second},
		{StableWindow: time.Second, PanicWindow: time.Second, Bucket: time.Second},
		{StableWindow: 600 * time.Millisecond, PanicWindow: 200 * time.Millisecond, Bucket: 100 * time.Millisecond},
	}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		cfg := configs[int(seed)%len(configs)]
		a, err := NewMeter(cfg)
		require.NoError(t, err)
		b, err := NewRingMeter(cfg)
		require.NoError(t, err)
		now := at(time.Duration(r.Int64N(int64(time.Hour))))
		huge := seed%7 == 0 // counts around 2^40: sums beyond 2^53
		for step := range 400 {
			switch x := r.IntN(100); {
			case x < 60:
				now = now.Add(time.Duration(r.Int64N(int64(2 * time.Second))))
			case x < 75:
				now = now.Add(time.Duration(r.Int64N(int64(3 * time.Minute))))
			case x < 80:
				now = now.Add(-time.Duration(r.Int64N(int64(time.Second)))) // older
			case x < 85: // the same instant
			default:
				now = now.Add(time.Duration(r.Int64N(10)) * a.bucketDuration()) // on a boundary
			}
			if r.IntN(3) > 0 {
				n := r.IntN(40) - 5
				if r.IntN(4) == 0 {
					n = 0
				}
				if huge {
					n = r.IntN(1<<41) + 1<<40
				}
				a.Observe(now, n)
				b.Observe(now, n)
				continue
			}
			if r.IntN(2) == 0 {
				s1, p1 := a.Averages(now)
				s2, p2 := b.Averages(now)
				require.True(t, same(s1, s2) && same(p1, p2), "seed %d step %d: Meter %v %v, RingMeter %v %v", seed, step, s1, p1, s2, p2)
			} else {
				require.Equal(t, a.Observation(now), b.Observation(now), "seed %d step %d", seed, step)
			}
		}
	}
}

func same(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }

func (m *Meter) bucketDuration() time.Duration { return time.Duration(m.bucket) }

// The tests of the Meter's semantics, on the RingMeter: the documented
// behaviour, not only agreement with Meter.
func TestRingMeterAverages(t *testing.T) {
	s := time.Second
	tests := []struct {
		name              string
		obs               []obs
		now               time.Duration
		stable, panicWant float64
	}{
		{"no observation", nil, 10 * s, 0, 0},
		{"constant over a full window", []obs{{0, 10}}, 60 * s, 10, 10},
		{"constant, window not yet full", []obs{{0, 4}}, 3 * s, 4, 4},
		{"at the first observation", []obs{{0, 4}}, 0, 4, 4},
		{"step in the panic window", []obs{{0, 0}, {54 * s, 10}}, 60 * s, 1, 10},
		{"time-weighted within one bucket", []obs{{0, 10}, {500 * time.Millisecond, 0}}, 1 * s, 5, 5},
		{"stopped load decays", []obs{{0, 10}, {60 * s, 0}}, 90 * s, 5, 0},
		{"long idle forgets everything", []obs{{0, 10}, {60 * s, 0}}, 10 * time.Minute, 0, 0},
		{"a gap longer than the window", []obs{{0, 3}}, 10 * time.Minute, 3, 3},
		{"negative counts as zero", []obs{{0, -5}}, 10 * s, 0, 0},
		{"an older observation adds no time", []obs{{0, 0}, {10 * s, 6}, {5 * s, 0}}, 20 * s, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewRingMeter(MeterConfig{})
			require.NoError(t, err)
			for _, o := range tt.obs {
				m.Observe(at(o.at), o.n)
			}
			stable, panic := m.Averages(at(tt.now))
			require.InDelta(t, tt.stable, stable, 1e-9, "stable")
			require.InDelta(t, tt.panicWant, panic, 1e-9, "panic")
		})
	}
	for _, cfg := range []MeterConfig{{Bucket: -time.Second}, {PanicWindow: 90 * time.Second}, {StableWindow: time.Hour, Bucket: time.Millisecond}} {
		_, err := NewRingMeter(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

// One scaling decision on a RingMeter: BenchmarkMeterObservationDecide
// without the scan of 60 buckets.
func BenchmarkRingMeterObservationDecide(b *testing.B) {
	m, _ := NewRingMeter(MeterConfig{})
	p, _ := NewKPA(KPAConfig{})
	now := at(0)
	for i := range 120 {
		m.Observe(now.Add(time.Duration(i)*time.Second), 30+i%10)
	}
	now = now.Add(120 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		o := m.Observation(now)
		o.Instances, o.InstanceLimit = 5, 10
		p.Decide(now, o)
	}
}

// A scaling round every 2 s of a function with steady traffic: observe,
// then read, the cost a dataplane pays per function and round.
func BenchmarkRingMeterRound(b *testing.B) {
	for _, name := range []string{"Meter", "RingMeter"} {
		b.Run(name, func(b *testing.B) {
			type meter interface {
				Observe(time.Time, int)
				Observation(time.Time) Observation
			}
			var m meter
			if name == "Meter" {
				m, _ = NewMeter(MeterConfig{})
			} else {
				m, _ = NewRingMeter(MeterConfig{})
			}
			now := at(0)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				now = now.Add(2 * time.Second)
				m.Observe(now, 3+i%5)
				_ = m.Observation(now)
			}
		})
	}
}
