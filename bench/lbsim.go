package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/internal/svgplot"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// Load-balancing quality: a discrete-event model on virtual time of one
// function with unequally fast instances, in which every routing decision
// is made by a real router.Router (the production policies, slots and
// handoff) seeded for reproducibility. Each instance runs its requests one
// at a time in arrival order (a single-threaded runtime behind a
// concurrency limit), with exponential service times; requests arrive as a
// Poisson stream. A request that finds every instance full waits in the
// function's FIFO queue and takes the first slot released, through the
// router's Handoff, as in the Dataplane. Sojourn runs from arrival to
// completion.
//
// The faastest simulator (another engineer's, in progress) models one
// service-time distribution per function, not per instance, so it cannot
// express heterogeneous instances; this model in bench/ does.

type lbParams struct {
	Requests int       `json:"requests"`
	Seeds    int       `json:"seeds"`
	Loads    []float64 `json:"loads"` // λ as a fraction of total capacity
}

// lbServiceMeans are the instances' mean service times: eight fast and
// two five times slower (a noisy neighbour), as in the router's tail test.
var lbServiceMeans = []time.Duration{
	10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond,
	10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond,
	50 * time.Millisecond, 50 * time.Millisecond,
}

const lbLimit = 8

type lbCell struct {
	Policy string  `json:"policy"`
	Load   float64 `json:"load"`
	// MeanMS and P99MS are sojourn times over seeds: median and range.
	MeanMS Spread `json:"mean_ms"`
	P99MS  Spread `json:"p99_ms"`
	// Queued is the share of requests that waited in the function queue.
	Queued Spread `json:"queued"`
	// SlowShare is the share of requests the slow instances served.
	SlowShare Spread `json:"slow_share"`
}

type lbResult struct {
	Meta         Meta      `json:"meta"`
	Params       lbParams  `json:"params"`
	ServiceMeans []float64 `json:"service_means_ms"`
	Limit        int       `json:"limit"`
	Capacity     float64   `json:"capacity"` // requests/s, all instances
	Cells        []lbCell  `json:"cells"`
}

var lbPolicies = []func() router.Policy{router.P2C, router.RoundRobin, router.Random, router.LeastUtilized}

func runLB(ctx context.Context, e *env, p lbParams) (*lbResult, error) {
	res := &lbResult{Meta: newMeta("lb", e.command), Params: p, Limit: lbLimit}
	for _, m := range lbServiceMeans {
		res.ServiceMeans = append(res.ServiceMeans, ms(m))
		res.Capacity += 1 / m.Seconds()
	}
	for _, load := range p.Loads {
		for _, newPolicy := range lbPolicies {
			var mean, p99, queued, slow []float64
			name := ""
			for seed := range p.Seeds {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				pol := newPolicy()
				name = pol.Name()
				r, err := lbRun(pol, lbServiceMeans, lbLimit, load*res.Capacity, p.Requests, uint64(seed+1))
				if err != nil {
					return nil, err
				}
				mean, p99 = append(mean, r.mean), append(p99, r.p99)
				queued, slow = append(queued, r.queued), append(slow, r.slowShare)
			}
			c := lbCell{Policy: name, Load: load, MeanMS: spreadOf(mean), P99MS: spreadOf(p99), Queued: spreadOf(queued), SlowShare: spreadOf(slow)}
			res.Cells = append(res.Cells, c)
			e.logf("lb: λ=%.2f %-14s mean %6.1f ms  p99 %7.1f ms  queued %4.1f %%", load, name, c.MeanMS.Median, c.P99MS.Median, 100*c.Queued.Median)
		}
	}
	res.Meta.finish()
	return res, nil
}

type lbRunResult struct {
	mean, p99         float64 // ms
	queued, slowShare float64
}

type lbEvent struct {
	at   float64 // seconds
	inst int
}

type lbEvents []lbEvent

func (h lbEvents) Len() int           { return len(h) }
func (h lbEvents) Less(i, j int) bool { return h[i].at < h[j].at }
func (h lbEvents) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lbEvents) Push(x any)        { *h = append(*h, x.(lbEvent)) }
func (h *lbEvents) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// lbRun simulates n requests at rate (per second) and returns the sojourn
// statistics of all but the first tenth (the warm-up).
func lbRun(pol router.Policy, means []time.Duration, limit int, rate float64, n int, seed uint64) (lbRunResult, error) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	world := rand.New(rand.NewPCG(seed, 2))

	type req struct {
		arrival float64
		id      int
	}
	type inst struct {
		in    *lifecycle.Instance
		fifo  []req // waiting inside the instance, in order
		busy  bool
		cur   req
		route []router.Route // slots held, in the order of fifo (cur first)
		mean  float64
	}
	insts := make([]*inst, len(means))
	byID := map[string]int{}
	var queue []req // the function's queue
	var events lbEvents
	now := 0.0
	warm := n / 10
	sojourn := make([]float64, 0, n-warm)
	queuedCount, slowCount, measured := 0, 0, 0
	slowest := slices.Max(means)

	start := func(i int, r req, rt router.Route) {
		x := insts[i]
		x.route = append(x.route, rt)
		if x.busy {
			x.fifo = append(x.fifo, r)
			return
		}
		x.busy, x.cur = true, r
		heap.Push(&events, lbEvent{at: now + world.ExpFloat64()*x.mean, inst: i})
	}
	rtr, err := router.New(router.Config{Policy: pol, Rand: rand.NewPCG(seed, 1)}, router.Hooks{})
	waiters := waitersFunc(func(rt router.Route) bool {
		if len(queue) == 0 {
			return false
		}
		r := queue[0]
		queue = queue[1:]
		start(byID[rt.Instance().ID], r, rt)
		return true
	})
	if err != nil {
		return lbRunResult{}, err
	}
	for i, m := range means {
		in := lifecycle.NewInstance(lifecycle.Info{ID: fmt.Sprintf("i%02d", i), FunctionID: "fn", Addr: "sim"}, t0)
		for _, s := range []lifecycle.State{lifecycle.Loading, lifecycle.Loaded, lifecycle.Ready} {
			if err := in.Transition(t0, s, "model"); err != nil {
				return lbRunResult{}, err
			}
		}
		insts[i] = &inst{in: in, mean: m.Seconds()}
		byID[in.ID] = i
		if err := rtr.Add(t0, in, concurrency.NewSlots(concurrency.Shared, limit), waiters); err != nil {
			return lbRunResult{}, err
		}
	}

	complete := func(ev lbEvent) {
		now = ev.at
		x := insts[ev.inst]
		r := x.cur
		rt := x.route[0]
		x.route = x.route[1:]
		if r.id >= warm {
			sojourn = append(sojourn, now-r.arrival)
			measured++
			if means[ev.inst] == slowest {
				slowCount++
			}
		}
		x.busy = false
		if len(x.fifo) > 0 {
			next := x.fifo[0]
			x.fifo = x.fifo[1:]
			x.busy, x.cur = true, next
			heap.Push(&events, lbEvent{at: now + world.ExpFloat64()*x.mean, inst: ev.inst})
		}
		rt.Release(at(now), router.Success) // may hand the slot to the queue's head
	}

	arrival := 0.0
	for id := range n {
		arrival += world.ExpFloat64() / rate
		for len(events) > 0 && events[0].at <= arrival {
			complete(heap.Pop(&events).(lbEvent))
		}
		now = arrival
		r := req{arrival: arrival, id: id}
		rt, err := rtr.Pick("fn")
		switch {
		case err == nil:
			start(byID[rt.Instance().ID], r, rt)
		case errors.Is(err, router.ErrNoCapacity):
			queue = append(queue, r)
			if id >= warm {
				queuedCount++
			}
		default:
			return lbRunResult{}, err
		}
	}
	for len(events) > 0 {
		complete(heap.Pop(&events).(lbEvent))
	}
	if len(queue) > 0 {
		return lbRunResult{}, fmt.Errorf("lb model: %d requests left in the queue", len(queue))
	}
	slices.Sort(sojourn)
	var sum float64
	for _, s := range sojourn {
		sum += s
	}
	return lbRunResult{
		mean: 1000 * sum / float64(len(sojourn)), p99: 1000 * quantile(sojourn, .99),
		queued: float64(queuedCount) / float64(n-warm), slowShare: float64(slowCount) / float64(measured),
	}, nil
}

func lbChart(r *lbResult) *svgplot.Chart {
	c := &svgplot.Chart{
		Title:  "Load balancing on heterogeneous instances (8 × 10 ms, 2 × 50 ms; limit 8): sojourn time",
		XLabel: "offered load λ (fraction of total capacity)",
		Panels: []Panel{{YLabel: "mean sojourn (ms)"}, {YLabel: "p99 sojourn (ms)", LogY: true}},
	}
	for _, newPolicy := range lbPolicies {
		name := newPolicy().Name()
		mean := svgplot.Series{Name: name, Markers: true}
		p99 := svgplot.Series{Name: name, Markers: true}
		for _, cell := range r.Cells {
			if cell.Policy != name {
				continue
			}
			mean.X, mean.Y = append(mean.X, cell.Load), append(mean.Y, cell.MeanMS.Median)
			p99.X, p99.Y = append(p99.X, cell.Load), append(p99.Y, math.Max(cell.P99MS.Median, 0.01))
		}
		c.Panels[0].Series = append(c.Panels[0].Series, mean)
		c.Panels[1].Series = append(c.Panels[1].Series, p99)
	}
	return c
}

func lbMarkdown(r *lbResult, svg string) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("%d seeds per cell, %d requests each (the first tenth is warm-up); median over seeds with range", r.Params.Seeds, r.Params.Requests)))
	fmt.Fprintf(&b, "\nModel: %d instances, mean service %s ms (exponential, one request at a time per instance), concurrency limit %d each, "+
		"total capacity %.0f req/s; Poisson arrivals; every pick by a real `router.Router`; requests that find every instance full wait in the function's FIFO queue for the first released slot. Virtual time: the figures do not depend on the machine.\n\n",
		len(r.ServiceMeans), joinMS(r.ServiceMeans), r.Limit, r.Capacity)
	fmt.Fprintf(&b, "![mean and p99 sojourn against load, per policy](%s)\n\n", svg)
	var rows [][]string
	for _, c := range r.Cells {
		rows = append(rows, []string{fmt.Sprintf("%.2f", c.Load), c.Policy, fmtSpread(c.MeanMS, fmtMS), fmtSpread(c.P99MS, fmtMS),
			fmt.Sprintf("%.1f %%", 100*c.SlowShare.Median), fmt.Sprintf("%.1f %%", 100*c.Queued.Median)})
	}
	b.WriteString(table([]string{"λ", "policy", "mean sojourn (ms)", "p99 sojourn (ms)", "served by slow instances", "waited in queue"}, "llrrrr", rows))
	return b.String()
}

func joinMS(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%g", x)
	}
	return strings.Join(parts, ", ")
}

// waitersFunc adapts a function to router.Waiters.
type waitersFunc func(rt router.Route) bool

func (f waitersFunc) Handoff(rt router.Route) bool { return f(rt) }
