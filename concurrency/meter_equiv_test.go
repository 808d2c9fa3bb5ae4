package concurrency

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMeterEqualsTheReference drives the Meter and the reference scan with the same
// random observations and reads (bursts, long gaps, repeated and older
// instants, negative counts, counts large enough to leave the range in
// which floating point sums are exact) and requires the same averages and
// observations, bit for bit.
func TestMeterEqualsTheReference(t *testing.T) {
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
		a, err := newRefMeter(cfg)
		require.NoError(t, err)
		b, err := NewMeter(cfg)
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
				require.True(t, same(s1, s2) && same(p1, p2), "seed %d step %d: reference %v %v, Meter %v %v", seed, step, s1, p1, s2, p2)
			} else {
				require.Equal(t, a.Observation(now), b.Observation(now), "seed %d step %d", seed, step)
			}
		}
	}
}

func same(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }

func (m *refMeter) bucketDuration() time.Duration { return time.Duration(m.bucket) }

// A scaling round every 2 s of a function with steady traffic: observe,
// then read, the cost a dataplane pays per function and round.
func BenchmarkMeterRound(b *testing.B) {
	for _, name := range []string{"reference", "Meter"} {
		b.Run(name, func(b *testing.B) {
			type meter interface {
				Observe(time.Time, int)
				Observation(time.Time) Observation
			}
			var m meter
			if name == "reference" {
				m, _ = newRefMeter(MeterConfig{})
			} else {
				m, _ = NewMeter(MeterConfig{})
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
