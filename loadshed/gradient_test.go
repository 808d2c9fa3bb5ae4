package loadshed

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestGradient(t *testing.T, a AdaptiveConfig) *gradient {
	t.Helper()
	cfg := Config{Adaptive: a}
	require.NoError(t, cfg.normalize())
	return newGradient(cfg.Adaptive)
}

// atLimit as the in-flight count of feed means "as many as the limit".
const atLimit = -1

// feed gives the gradient n intervals of 100 completions with the given
// mean latency and service time (seconds), with inFlight requests in
// flight, starting at interval *i.
func feed(g *gradient, i *int, n int, latency, service, inFlight float64, waits bool) {
	for range n {
		*i++
		t := int64(*i) * int64(DefaultInterval)
		f := inFlight
		if f == atLimit {
			f = float64(g.Limit())
		}
		g.update(t, 100, 100*latency, 100*service, 0, f, waits)
	}
}

func TestGradientGrowsWhileLatencyHolds(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{})
	i := 0
	// Always full, latency at no-load: the limit grows by Smoothing × √limit
	// per update, 2(√1000 − √20) / 0.2 ≈ 270 updates from 20 to 1000.
	feed(g, &i, 250, 0.05, 0.05, atLimit, true)
	assert.Less(t, g.Limit(), DefaultMaxLimit)
	feed(g, &i, 50, 0.05, 0.05, atLimit, true)
	assert.Equal(t, DefaultMaxLimit, g.Limit(), "grows to the max while latency holds")
	assert.False(t, g.Congested())
	assert.InDelta(t, 50*time.Millisecond, g.NoLoad(), float64(time.Millisecond))
}

func TestGradientDoesNotGrowWhenIdle(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{})
	i := 0
	feed(g, &i, 200, 0.05, 0.05, 5, true) // 5 in flight: under half the limit
	assert.Equal(t, DefaultInitialLimit, g.Limit())
}

func TestGradientShrinksUnderQueueing(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{InitialLimit: 200})
	i := 0
	feed(g, &i, 10, 0.05, 0.05, atLimit, true)
	// Latency 4× the no-load, all of it queueing (service unchanged).
	feed(g, &i, 100, 0.2, 0.05, atLimit, true)
	assert.True(t, g.Congested())
	assert.Less(t, g.Limit(), 30, "limit × ½ + √limit settles near 4·√limit")
	assert.GreaterOrEqual(t, g.Limit(), DefaultMinLimit)
	assert.InDelta(t, 50*time.Millisecond, g.NoLoad(), float64(time.Millisecond), "queueing does not move the no-load latency")
}

// TestGradientScalesABacklog: when far more is in flight than the limit
// (the burst admitted before the detector turned on), the limit follows
// what the latency says that backlog can run, instead of collapsing.
func TestGradientScalesABacklog(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{})
	i := 0
	feed(g, &i, 10, 0.05, 0.05, atLimit, true)
	// 1000 in flight, latency 20× the no-load: 1000 × 1.5 / 20 = 75 would
	// run at the tolerance (plus √limit); the limit moves there rather
	// than halving toward MinLimit or growing toward the backlog.
	feed(g, &i, 15, 1, 0.05, 1000, true)
	assert.InDelta(t, 80, g.Limit(), 10)
}

func TestGradientIgnoresTheStartUpBias(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{})
	i := 0
	feed(g, &i, 1, 0.02, 0.02, 30, true) // the short requests finish first
	feed(g, &i, 50, 0.05, 0.05, 30, true)
	// Without the warm-up the minimum would be 20 ms; after it, what is
	// left of the first mean's error is 30 ms × 0.75⁵ ≈ 7 ms: 43 ms.
	assert.InDelta(t, 43*time.Millisecond, g.NoLoad(), float64(time.Millisecond), "the first, biased mean set the minimum")
}

func TestGradientReMeasuresASlowerFunction(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{InitialLimit: 100})
	i := 0
	feed(g, &i, 20, 0.05, 0.05, 100, true)
	require.InDelta(t, 50*time.Millisecond, g.NoLoad(), float64(time.Millisecond))
	// The function now takes 100 ms, without queueing: re-measured
	// within a few updates, long before the window.
	feed(g, &i, 15, 0.1, 0.1, 100, true)
	// The average passes 75 ms (the tolerance) at the 3rd update and the
	// minimum is reset 5 updates later, at 0.1 − 0.05 × 0.75⁷ ≈ 93 ms.
	assert.InDelta(t, 93*time.Millisecond, g.NoLoad(), float64(2*time.Millisecond))
	assert.False(t, g.Congested())
	assert.GreaterOrEqual(t, g.Limit(), 90, "the limit was not crushed")

	// Without queueing delays reported, only the window forgets.
	h := newTestGradient(t, AdaptiveConfig{InitialLimit: 100})
	j := 0
	feed(h, &j, 20, 0.05, 0.05, 100, false)
	feed(h, &j, 15, 0.1, 0.1, 100, false)
	assert.InDelta(t, 50*time.Millisecond, h.NoLoad(), float64(time.Millisecond))
	feed(h, &j, 300, 0.1, 0.1, 100, false) // 30 s: the window has passed
	assert.InDelta(t, 100*time.Millisecond, h.NoLoad(), float64(5*time.Millisecond))
}

func TestGradientBacksOffOnDrops(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{InitialLimit: 100})
	g.update(int64(DefaultInterval), 0, 0, 0, 30, 100, true)
	assert.Equal(t, 90, g.Limit())
	g.update(2*int64(DefaultInterval), 0, 0, 0, 1, 100, true) // too few to act on alone
	assert.Equal(t, 90, g.Limit())
}

func TestGradientAccumulatesSmallIntervals(t *testing.T) {
	g := newTestGradient(t, AdaptiveConfig{MinSamples: 50})
	for k := 1; k <= 4; k++ { // 4 × 10 completions: not yet 50
		g.update(int64(k)*int64(DefaultInterval), 10, 10*0.05, 10*0.05, 0, 1e9, true)
	}
	assert.Zero(t, g.smoothed, "no update before MinSamples")
	g.update(5*int64(DefaultInterval), 10, 10*0.05, 10*0.05, 0, 1e9, true)
	assert.InDelta(t, 0.05, g.smoothed, 1e-9)
}
