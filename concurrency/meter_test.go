package concurrency

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the start of virtual time in these tests: the zero time, which a
// simulator may well use, is as good a clock as any.
var t0 = time.Time{}

func at(d time.Duration) time.Time { return t0.Add(d) }

type obs struct {
	at time.Duration
	n  int
}

func TestMeterAverages(t *testing.T) {
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
		{
			"many reports of one value weigh as one",
			[]obs{{0, 2}, {100 * time.Millisecond, 2}, {200 * time.Millisecond, 2}, {300 * time.Millisecond, 2}, {s, 2}},
			2 * s, 2, 2,
		},
		{"stopped load decays", []obs{{0, 10}, {60 * s, 0}}, 90 * s, 5, 0},
		{"long idle forgets everything", []obs{{0, 10}, {60 * s, 0}}, 10 * time.Minute, 0, 0},
		{"a gap longer than the window", []obs{{0, 3}}, 10 * time.Minute, 3, 3},
		{"negative counts as zero", []obs{{0, -5}}, 10 * s, 0, 0},
		{"an older observation adds no time", []obs{{0, 0}, {10 * s, 6}, {5 * s, 0}}, 20 * s, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMeter(MeterConfig{})
			require.NoError(t, err)
			for _, o := range tt.obs {
				m.Observe(at(o.at), o.n)
			}
			stable, panic := m.Averages(at(tt.now))
			assert.InDelta(t, tt.stable, stable, 1e-9, "stable")
			assert.InDelta(t, tt.panicWant, panic, 1e-9, "panic")
		})
	}
}

// TestMeterSlidingWindow checks the window slides by whole buckets: a
// square pulse of 10 during [10 s, 20 s) reads as its exact share of the
// covered time at every later second.
func TestMeterSlidingWindow(t *testing.T) {
	m, err := NewMeter(MeterConfig{StableWindow: 30 * time.Second, PanicWindow: 5 * time.Second})
	require.NoError(t, err)
	want := func(sec float64, window float64) float64 {
		start := max(0, math.Ceil(sec-window)) // the first whole bucket inside the window
		overlap := max(0, min(20, sec)-max(10, start))
		return 10 * overlap / (sec - start)
	}
	m.Observe(at(0), 0)
	for ms := 250; ms <= 60_000; ms += 250 {
		switch ms {
		case 10_000:
			m.Observe(at(10*time.Second), 10)
		case 20_000:
			m.Observe(at(20*time.Second), 0)
		}
		sec := float64(ms) / 1000
		stable, panic := m.Averages(at(time.Duration(ms) * time.Millisecond))
		assert.InDelta(t, want(sec, 30), stable, 1e-9, "stable at %vs", sec)
		assert.InDelta(t, want(sec, 5), panic, 1e-9, "panic at %vs", sec)
	}
}

func TestMeterObservation(t *testing.T) {
	m, err := NewMeter(MeterConfig{})
	require.NoError(t, err)
	o := m.Observation(at(0))
	assert.True(t, o.LastActive.IsZero(), "never active")

	m.Observe(at(time.Second), 3)
	o = m.Observation(at(5 * time.Second))
	assert.Equal(t, 3, o.InFlight)
	assert.Equal(t, at(5*time.Second), o.LastActive, "active until now")

	m.Observe(at(7*time.Second), 0)
	o = m.Observation(at(20 * time.Second))
	assert.Equal(t, 0, o.InFlight)
	assert.Equal(t, at(7*time.Second), o.LastActive, "the count dropped to zero at 7 s")
	// 3 in flight for 6 s, over the 19 s since the first observation.
	assert.InDelta(t, 3*6.0/19, o.StableConcurrency, 1e-9)
}

func TestNewMeterValidates(t *testing.T) {
	for _, cfg := range []MeterConfig{
		{Bucket: -time.Second},
		{StableWindow: 1500 * time.Millisecond},
		{PanicWindow: 90 * time.Second},
		{StableWindow: 10 * time.Second, PanicWindow: 20 * time.Second},
		{StableWindow: time.Hour, Bucket: time.Millisecond},
	} {
		_, err := NewMeter(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}
