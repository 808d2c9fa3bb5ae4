package loadshed

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ms(n int) time.Time { return epoch.Add(time.Duration(n) * time.Millisecond) }

// switchable is a Signal a test turns on and off.
type switchable struct{ on atomic.Bool }

func (s *switchable) Overloaded(time.Time) bool { return s.on.Load() }

func TestNewValidates(t *testing.T) {
	bad := []Config{
		{Capacity: -1},
		{Interval: time.Microsecond},
		{Interval: -time.Second},
		{CoolOff: 50 * time.Millisecond},
		{RetryAfter: -time.Second},
		{LowWater: 1.5},
		{LowWater: -0.5},
		{Window: 150 * time.Millisecond},
		{Window: 1500 * time.Millisecond},
		{Burst: math.NaN()},
		{MaxCallers: -1},
		{Signals: []Signal{nil}},
		{Adaptive: AdaptiveConfig{MinLimit: -1}},
		{Adaptive: AdaptiveConfig{MinLimit: 50, MaxLimit: 10}},
		{Adaptive: AdaptiveConfig{InitialLimit: 2000}},
		{Adaptive: AdaptiveConfig{Tolerance: -1}},
		{Adaptive: AdaptiveConfig{MinSamples: -1}},
		{Adaptive: AdaptiveConfig{Smoothing: 2}},
		{Adaptive: AdaptiveConfig{MinRTTWindow: -time.Second}},
		{Capacity: 10, Adaptive: AdaptiveConfig{Enabled: true, MaxLimit: 20}},
	}
	for _, cfg := range bad {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	s := newShedder(t, Config{})
	assert.Equal(t, DefaultInitialLimit, s.Limit(), "unknown capacity: the adaptive limit starts at its initial value")
	cfg := s.cfg
	assert.Equal(t, DefaultInterval, cfg.Interval)
	assert.Equal(t, DefaultCoolOff, cfg.CoolOff)
	assert.Equal(t, DefaultCoolOff, cfg.RetryAfter)
	assert.Equal(t, DefaultQueueDelayTarget, cfg.QueueDelayTarget)
	assert.Equal(t, DefaultWindow, cfg.Window)
	assert.True(t, cfg.Adaptive.Enabled)
	assert.Equal(t, DefaultMaxLimit, cfg.Adaptive.MaxLimit)

	fixed := newShedder(t, Config{Capacity: 8})
	assert.Equal(t, 8, fixed.Limit())
	assert.Nil(t, fixed.grad, "a known capacity needs no adaptive limit")
	both := newShedder(t, Config{Capacity: 8, Adaptive: AdaptiveConfig{Enabled: true}})
	assert.Equal(t, 8, both.cfg.Adaptive.MaxLimit, "the adaptive limit is capped at Capacity")
}

func TestAdmitAndDone(t *testing.T) {
	s := newShedder(t, Config{Capacity: 2})
	a, err := s.Admit(ms(0), "a", Default)
	require.NoError(t, err)
	b, err := s.Admit(ms(1), "b", Sheddable)
	require.NoError(t, err)
	c, err := s.Admit(ms(2), "c", Default)
	require.NoError(t, err, "not shedding: admitted beyond the capacity")
	assert.Equal(t, 3, s.InFlight())
	a.Done(ms(3), Success)
	a.Done(ms(3), Success) // a second Done on the same ticket does nothing
	b.Done(ms(4), Failure)
	c.Started(ms(4))
	c.Done(ms(5), Ignored)
	var zero Ticket
	zero.Started(ms(5))
	zero.Done(ms(5), Success)
	assert.Equal(t, 0, s.InFlight())
}

// forced returns a shedder whose detector is on, through a Signal.
func forced(t *testing.T, cfg Config) (*Shedder, *switchable) {
	t.Helper()
	sig := &switchable{}
	sig.on.Store(true)
	cfg.Signals = append(cfg.Signals, sig)
	s := newShedder(t, cfg)
	s.Tick(ms(0))
	s.Tick(ms(100))
	require.True(t, s.Shedding())
	return s, sig
}

func TestShedError(t *testing.T) {
	s, _ := forced(t, Config{Capacity: 10, CoolOff: 2 * time.Second})
	_, err := s.Admit(ms(150), "bulk", Sheddable)
	require.ErrorIs(t, err, ErrShed)
	var se *ShedError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, ReasonPriority, se.Reason)
	assert.Equal(t, 2*time.Second, se.RetryAfter, "the hint defaults to the cool-off")
	d, ok := RetryAfter(err)
	assert.True(t, ok)
	assert.Equal(t, 2*time.Second, d)
	assert.Equal(t, "loadshed: request shed (sheddable request during overload); retry after 2s", err.Error())
	_, ok = RetryAfter(errors.New("other"))
	assert.False(t, ok)
	assert.Equal(t, "caller over its fair share", ReasonOverShare.String())
	assert.Equal(t, "Reason(9)", Reason(9).String())
}

// TestPriorityThresholds pins the admission rule while shedding, with a
// capacity of 10 and a burst of 0.5: Default requests up to 15 in flight,
// Critical ones up to 20, Sheddable ones never.
func TestPriorityThresholds(t *testing.T) {
	s, _ := forced(t, Config{Capacity: 10, Burst: 0.5})
	var held []Ticket
	admit := func(caller string, p Priority) error {
		tk, err := s.Admit(ms(150), caller, p)
		if err == nil {
			held = append(held, tk)
		}
		return err
	}
	for i := range 15 {
		require.NoError(t, admit(fmt.Sprintf("c%d", i), Default), "default #%d", i)
	}
	err := admit("late", Default)
	require.ErrorIs(t, err, ErrShed)
	var se *ShedError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, ReasonOverload, se.Reason)
	require.ErrorIs(t, admit("bulk", Sheddable), ErrShed)
	for i := range 5 {
		require.NoError(t, admit("vip", Critical), "critical #%d", i)
	}
	require.ErrorIs(t, admit("vip", Critical), ErrShed, "critical requests stop at 2× the limit")
	assert.Equal(t, 20, s.InFlight())
	for i := range held {
		held[i].Done(ms(160), Success)
	}
	assert.Equal(t, 0, s.InFlight())

	// Out-of-range priorities count as the nearest class.
	require.ErrorIs(t, admit("x", Priority(-7)), ErrShed)
	require.NoError(t, admit("y", Priority(9)))
}

// TestDetectorHysteresis drives the detector with an external signal: it
// turns on at the end of the first overloaded interval and off only after
// a full cool-off of clear intervals; a short relapse restarts the
// cool-off.
func TestDetectorHysteresis(t *testing.T) {
	sig := &switchable{}
	s := newShedder(t, Config{Capacity: 100, Signals: []Signal{sig}})
	s.Tick(ms(0))
	steps := []struct {
		at     int
		signal bool
		want   bool
	}{
		{100, false, false},
		{150, true, false}, // mid-interval: nothing decided yet
		{200, true, true},  // the interval ended overloaded
		{300, false, true},
		{1100, false, true}, // 900 ms clear: still cooling off
		{1150, true, true},
		{1200, true, true}, // relapse: the cool-off starts again
		{1300, false, true},
		{2100, false, true},
		{2200, false, false}, // 1 s clear since the last overloaded interval
		{2300, false, false},
	}
	for _, st := range steps {
		sig.on.Store(st.signal)
		s.Tick(ms(st.at))
		require.Equal(t, st.want, s.Shedding(), "at %d ms", st.at)
	}
	assert.Equal(t, 2, s.Stats().Transitions)
}

// TestTickEndsSheddingWithoutTraffic: with no request arriving, Tick lets
// the detector see the cool-off pass.
func TestTickEndsSheddingWithoutTraffic(t *testing.T) {
	s, sig := forced(t, Config{Capacity: 10})
	sig.on.Store(false)
	s.Tick(ms(5000)) // one call after a long gap covers all the intervals
	assert.False(t, s.Shedding())
}

// TestInFlightSignal: the average in flight seen by arrivals over an
// interval against the capacity; while shedding it clears only below
// LowWater × capacity.
func TestInFlightSignal(t *testing.T) {
	s := newShedder(t, Config{Capacity: 10, QueueDelayTarget: -1})
	s.Tick(ms(0))
	var held []Ticket
	for i := range 12 { // arrivals see 0..11 in flight: mean 5.5 < 10
		tk, err := s.Admit(ms(10+i), fmt.Sprint(i), Default)
		require.NoError(t, err)
		held = append(held, tk)
	}
	s.Tick(ms(100))
	require.False(t, s.Shedding())
	for i := range 3 { // they see 12, 13, 14: mean 13 ≥ 10
		tk, err := s.Admit(ms(110+i), fmt.Sprint("b", i), Default)
		require.NoError(t, err)
		held = append(held, tk)
	}
	s.Tick(ms(200))
	require.True(t, s.Shedding())
	// 15 in flight; finish down to 9.5 on average (≥ 0.9 × 10): stays on.
	for i := range 5 {
		held[i].Done(ms(210), Success)
	}
	tk, err := s.Admit(ms(220), "c", Critical) // sees 10
	require.NoError(t, err)
	held = append(held, tk)
	s.Tick(ms(1300))
	require.True(t, s.Shedding(), "10 in flight is not below LowWater × capacity")
	for i := 5; i < len(held); i++ {
		held[i].Done(ms(1310), Success)
	}
	for range 3 { // they see 0
		tk, err := s.Admit(ms(1320), "d", Default)
		require.NoError(t, err)
		tk.Done(ms(1321), Success)
	}
	s.Tick(ms(1400))
	require.True(t, s.Shedding(), "cooling off")
	s.Tick(ms(2500))
	require.False(t, s.Shedding())
}

// TestQueueDelaySignal: CoDel's rule, the least queueing delay of an
// interval above the target.
func TestQueueDelaySignal(t *testing.T) {
	s := newShedder(t, Config{Capacity: 1000})
	s.Tick(ms(0))
	wait := func(at, waited int) {
		tk, err := s.Admit(ms(at-waited), "c", Default)
		require.NoError(t, err)
		tk.Started(ms(at))
		tk.Done(ms(at+1), Success)
	}
	wait(10, 20)
	wait(20, 3) // one short wait: the queue drained once in the interval
	wait(30, 50)
	s.Tick(ms(100))
	require.False(t, s.Shedding())
	wait(110, 6)
	wait(150, 40)
	s.Tick(ms(200))
	require.True(t, s.Shedding(), "every request of the interval waited > 5 ms")

	off := newShedder(t, Config{Capacity: 1000, QueueDelayTarget: -1})
	off.Tick(ms(0))
	tk, _ := off.Admit(ms(0), "c", Default)
	tk.Started(ms(90))
	off.Tick(ms(100))
	require.False(t, off.Shedding(), "the signal is disabled")
}

// TestFairShareHoldsOnlyLimitedCallers: while shedding, a caller that
// wants more than its max-min share is held to it; one that wants less is
// not refused, even above the share.
func TestFairShareHoldsOnlyLimitedCallers(t *testing.T) {
	s, _ := forced(t, Config{Capacity: 10, Window: time.Second})
	// The greedy caller arrives 50 times per interval and gets refused
	// once it holds its share; "light" keeps 1 request in flight.
	var greedy []Ticket
	var light Ticket
	for iv := 1; iv <= 20; iv++ {
		at := iv*100 + 50
		if light.s == nil {
			var err error
			light, err = s.Admit(ms(at), "light", Default)
			require.NoError(t, err, "interval %d", iv)
		}
		for range 50 {
			if tk, err := s.Admit(ms(at), "greedy", Default); err == nil {
				greedy = append(greedy, tk)
			}
		}
		for len(greedy) > 0 && iv%2 == 0 { // greedy's requests finish slowly
			greedy[0].Done(ms(at+1), Success)
			greedy = greedy[1:]
			break
		}
		s.Tick(ms(iv*100 + 100))
	}
	st := s.Stats()
	require.Less(t, st.FairShare, 10.0)
	var err error
	for err == nil { // greedy takes what is left of its share, then is refused
		var tk Ticket
		if tk, err = s.Admit(ms(2150), "greedy", Default); err == nil {
			greedy = append(greedy, tk)
		}
	}
	var se *ShedError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, ReasonOverShare, se.Reason)
	assert.InDelta(t, st.FairShare, float64(len(greedy)), 1, "greedy held to its share")
	_, err = s.Admit(ms(2150), "light", Default)
	require.NoError(t, err, "a caller under its share is admitted")
	t.Logf("fair share %.2f, greedy holds %d, light holds 2", st.FairShare, len(greedy))
	assert.Equal(t, 2, st.Callers)
}

func TestCallersAreBoundedAndForgotten(t *testing.T) {
	s := newShedder(t, Config{Capacity: 100, MaxCallers: 3, Window: 500 * time.Millisecond})
	s.Tick(ms(0))
	for i := range 10 {
		tk, err := s.Admit(ms(10), fmt.Sprintf("caller-%d", i), Default)
		require.NoError(t, err)
		tk.Done(ms(20), Success)
	}
	assert.Equal(t, 3, s.Stats().Callers, "callers beyond MaxCallers share one account")
	s.Tick(ms(100))
	assert.Equal(t, 3, s.Stats().Callers)
	s.Tick(ms(700)) // idle for more than a window
	assert.Equal(t, 0, s.Stats().Callers, "idle callers are forgotten")
	tk, err := s.Admit(ms(710), "caller-9", Default)
	require.NoError(t, err)
	tk.Done(ms(711), Success)
	assert.Equal(t, 1, s.Stats().Callers)
}

func TestFairShare(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name     string
		demands  []float64
		capacity float64
		want     float64
	}{
		{"nobody", nil, 10, inf},
		{"all fit", []float64{1, 2, 3}, 10, inf},
		{"exactly fit", []float64{5, 5}, 10, inf},
		{"one greedy", []float64{1, 1, 100}, 10, 8},
		{"equal greedy", []float64{50, 50}, 10, 5},
		{"water-filling", []float64{1, 2, 20, 30}, 15, 6},
		{"refused everything", []float64{inf, 2}, 10, 8},
		{"zero capacity", []float64{1}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, fairShare(tt.demands, tt.capacity), 1e-9)
		})
	}
}

func TestParsePriority(t *testing.T) {
	tests := []struct {
		in   string
		want Priority
		ok   bool
	}{
		{"", Default, true},
		{"default", Default, true},
		{" Critical ", Critical, true},
		{"SHEDDABLE", Sheddable, true},
		{"urgent", Default, false},
		{"critical\x00", Default, false},
		{string(make([]byte, MaxPriorityLen+1)), Default, false},
	}
	for _, tt := range tests {
		p, err := ParsePriority(tt.in)
		if tt.ok {
			require.NoError(t, err, "%q", tt.in)
		} else {
			require.ErrorIs(t, err, ErrInvalidPriority, "%q", tt.in)
		}
		assert.Equal(t, tt.want, p, "%q", tt.in)
	}
	assert.Equal(t, "critical", Critical.String())
	assert.Equal(t, "Priority(5)", Priority(5).String())
	assert.False(t, Priority(5).Valid())
	assert.True(t, Sheddable.Valid())
	assert.Equal(t, "dropped", Dropped.String())
	assert.Equal(t, "Outcome(9)", Outcome(9).String())
}
