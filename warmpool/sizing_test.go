package warmpool

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestEWMASizingTargets(t *testing.T) {
	type takes struct {
		perSecond int
		seconds   int
	}
	tests := []struct {
		name      string
		cfg       EWMASizingConfig
		latencies []time.Duration // creation latencies observed first
		load      []takes         // phases of steady load, in order
		idleAfter time.Duration   // time without takes after the load
		want      int
	}{
		{"no takes: Min", EWMASizingConfig{Min: 2, Max: 10}, nil, nil, 0, 2},
		{"no takes, Min 0", EWMASizingConfig{Min: 0, Max: 10}, nil, nil, 0, 0},
		{"steady 5/s, default latency 1s, safety 2", EWMASizingConfig{Min: 1, Max: 100},
			nil, []takes{{5, 120}}, 0, 10},
		{"steady 5/s, latency 300ms: 3 (1.5×2)", EWMASizingConfig{Min: 0, Max: 100},
			[]time.Duration{300 * time.Millisecond}, []takes{{5, 120}}, 0, 3},
		{"steady 4/s, latency 250ms, safety 1: 1", EWMASizingConfig{Min: 0, Max: 100, Safety: 1},
			[]time.Duration{250 * time.Millisecond}, []takes{{4, 120}}, 0, 1},
		{"rounds up a fraction: 3/s × 0.5s × 1.5 = 2.25 → 3", EWMASizingConfig{Min: 0, Max: 100, Safety: 1.5},
			[]time.Duration{500 * time.Millisecond}, []takes{{3, 120}}, 0, 3},
		{"clamped to Max", EWMASizingConfig{Min: 1, Max: 8},
			[]time.Duration{2 * time.Second}, []takes{{50, 120}}, 0, 8},
		{"latency average: 1s then 3s with weight 0.5 → 2s", EWMASizingConfig{Min: 0, Max: 100, LatencyAlpha: 0.5, Safety: 1},
			[]time.Duration{time.Second, 3 * time.Second}, []takes{{2, 120}}, 0, 4},
		{"load drops: the average follows", EWMASizingConfig{Min: 0, Max: 100},
			nil, []takes{{20, 60}, {2, 120}}, 0, 4},
		{"idle for a minute: back to Min", EWMASizingConfig{Min: 1, Max: 100},
			nil, []takes{{20, 60}}, time.Minute, 1},
		{"one interval idle decays by 1-Alpha: 10/s → 8/s", EWMASizingConfig{Min: 0, Max: 100, Safety: 1},
			nil, []takes{{10, 120}}, time.Second, 8},
		{"wider interval, same rate", EWMASizingConfig{Min: 0, Max: 100, Interval: 10 * time.Second},
			nil, []takes{{5, 600}}, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewEWMASizing(tt.cfg)
			require.NoError(t, err)
			now := t0
			for _, l := range tt.latencies {
				s.ObserveCreate(now, l)
			}
			s.Target(now) // starts the first interval
			for _, ph := range tt.load {
				for sec := 0; sec < ph.seconds; sec++ {
					for i := 0; i < ph.perSecond; i++ {
						// Spread the takes inside the second.
						s.ObserveTake(now.Add(time.Duration(i) * time.Second / time.Duration(ph.perSecond)))
					}
					now = now.Add(time.Second)
				}
			}
			now = now.Add(tt.idleAfter)
			assert.Equal(t, tt.want, s.Target(now), "rate %.4f/s latency %v", s.Rate(), s.Latency())
		})
	}
}

func TestEWMASizingIsDeterministicAndIgnoresBadLatency(t *testing.T) {
	run := func() int {
		s, err := NewEWMASizing(EWMASizingConfig{Min: 0, Max: 1000})
		require.NoError(t, err)
		now := t0
		for i := range 5000 {
			now = now.Add(time.Duration(i%7) * 37 * time.Millisecond)
			s.ObserveTake(now)
			if i%100 == 0 {
				s.ObserveCreate(now, time.Duration(i)*time.Millisecond)
			}
		}
		s.ObserveCreate(now, -time.Hour) // ignored
		return s.Target(now)
	}
	assert.Equal(t, run(), run())
	// A clock that steps back changes nothing.
	s, _ := NewEWMASizing(EWMASizingConfig{Min: 1, Max: 10})
	s.ObserveTake(t0)
	s.ObserveTake(t0.Add(-time.Hour))
	assert.Equal(t, 1, s.Target(t0.Add(-time.Hour)))
}

func TestNewEWMASizingRejectsBadConfig(t *testing.T) {
	for _, cfg := range []EWMASizingConfig{
		{Min: -1, Max: 1},
		{Min: 0, Max: 0},
		{Min: 3, Max: 2},
		{Max: 1, Interval: -time.Second},
		{Max: 1, InitialLatency: -time.Second},
		{Max: 1, Alpha: 1.5},
		{Max: 1, Alpha: -0.1},
		{Max: 1, LatencyAlpha: 2},
		{Max: 1, Safety: 0.5},
		{Max: 1, Safety: math.Inf(1)},
		{Max: 1, Safety: math.NaN()},
	} {
		_, err := NewEWMASizing(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
}

func TestFixedSizing(t *testing.T) {
	s := FixedSizing(3)
	s.ObserveTake(t0)
	s.ObserveCreate(t0, time.Hour)
	assert.Equal(t, 3, s.Target(t0))
}
