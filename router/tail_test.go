package router

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/faasplane/faas/concurrency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tail model: a discrete-event simulation on virtual time of one
// function whose instances are unequally fast, fed by the real pickers and
// real concurrency.Slots. Each instance serves its requests one at a time in
// arrival order (a FIFO server whose queue is its concurrency limit), with
// exponential service times; requests arrive as a Poisson stream. A request
// that finds every instance full is rejected and counts as the worst
// latency. Everything is seeded, so the figures are the same on every run.

type modelConfig struct {
	serviceMeans []float64 // mean service time of each instance, seconds
	limit        int       // concurrency limit of every instance
	rate         float64   // arrivals per second
	requests     int
	seed         uint64
}

type modelResult struct {
	p50, p99, p999 float64 // seconds; +Inf when rejections reach the tail
	rejected       int
	slowShare      float64 // share of served requests on the slowest instances (logged)
}

type completion struct {
	at   float64
	inst int
}

type completions []completion

func (c completions) Len() int           { return len(c) }
func (c completions) Less(i, j int) bool { return c[i].at < c[j].at }
func (c completions) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *completions) Push(x any)        { *c = append(*c, x.(completion)) }
func (c *completions) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

func runModel(p Policy, cfg modelConfig) modelResult {
	n := len(cfg.serviceMeans)
	cands := make([]Candidate, n)
	for i := range cands {
		cands[i] = Candidate{Slots: concurrency.NewSlots(concurrency.Shared, cfg.limit)}
	}
	picker := p.NewPicker(cands)
	policySrc := rand.NewPCG(cfg.seed, 1)
	world := rand.New(rand.NewPCG(cfg.seed, 2))
	slowest := slices.Max(cfg.serviceMeans)

	lastDone := make([]float64, n)
	pending := &completions{}
	latencies := make([]float64, 0, cfg.requests)
	var res modelResult
	served, onSlow := 0, 0
	now := 0.0
	for range cfg.requests {
		now += world.ExpFloat64() / cfg.rate
		for pending.Len() > 0 && (*pending)[0].at <= now {
			c := heap.Pop(pending).(completion)
			cands[c.inst].Slots.Release()
		}
		i := picker.Pick(policySrc)
		if i < 0 || !cands[i].Slots.TryAcquire() {
			res.rejected++
			latencies = append(latencies, math.Inf(1))
			continue
		}
		start := max(now, lastDone[i])
		done := start + world.ExpFloat64()*cfg.serviceMeans[i]
		lastDone[i] = done
		heap.Push(pending, completion{at: done, inst: i})
		latencies = append(latencies, done-now)
		served++
		if cfg.serviceMeans[i] == slowest {
			onSlow++
		}
	}
	slices.Sort(latencies)
	q := func(p float64) float64 { return latencies[int(p*float64(len(latencies)-1))] }
	res.p50, res.p99, res.p999 = q(0.50), q(0.99), q(0.999)
	res.slowShare = float64(onSlow) / float64(served)
	return res
}

// TestP2CTailBeatsRandomAndRoundRobin: eight fast instances (10 ms) and two
// slow ones (50 ms, e.g. on a noisy host), limit 8, at 70 % of the total
// capacity of 840 requests/s. Random and round robin give every instance an
// equal share until it is full, so the slow ones run with full queues (8 ×
// 50 ms) and their requests make the tail. P2C gives a slow instance a
// request only when it is less loaded than the other sample, so its queue
// stays about as short as a fast instance's; the slow ones still serve at
// their capacity (the share of requests they take is the same), but each
// of their requests waits behind about half as many.
func TestP2CTailBeatsRandomAndRoundRobin(t *testing.T) {
	cfg := modelConfig{
		serviceMeans: []float64{0.010, 0.010, 0.010, 0.010, 0.010, 0.010, 0.010, 0.010, 0.050, 0.050},
		limit:        8,
		rate:         0.7 * 840,
		requests:     200_000,
		seed:         2026,
	}
	results := map[string]modelResult{}
	for _, p := range benchPolicies {
		res := runModel(p, cfg)
		results[p.Name()] = res
		t.Logf("%-16s p50 %6.1f ms  p99 %6.1f ms  p99.9 %6.1f ms  rejected %5d  on slow instances %4.1f %%",
			p.Name(), res.p50*1000, res.p99*1000, res.p999*1000, res.rejected, res.slowShare*100)
	}
	p2c, rnd, rr := results["p2c"], results["random"], results["round-robin"]
	require.False(t, math.IsInf(p2c.p99, 1), "P2C rejects requests into its p99")
	// At least 40 % shorter (measured: about half).
	assert.Less(t, p2c.p99, 0.6*rnd.p99, "P2C p99 vs random")
	assert.Less(t, p2c.p99, 0.6*rr.p99, "P2C p99 vs round robin")
	assert.Less(t, p2c.p999, rnd.p999, "P2C p99.9 vs random")
	assert.Less(t, p2c.p999, rr.p999, "P2C p99.9 vs round robin")
	assert.Less(t, p2c.p50, rnd.p50, "P2C p50 vs random")
	assert.LessOrEqual(t, p2c.rejected, rnd.rejected)

	// Deterministic: the same seed gives the same figures.
	assert.Equal(t, p2c, runModel(P2C(), cfg))
}
