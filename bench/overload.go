package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/internal/svgplot"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// Overload: two real Dataplanes (pods/local agents running the sleep
// function on a fixed number of instances, so that capacity is known), one
// with load shedding and one without, fed open-loop Poisson load from 0.5×
// to 10× of the capacity measured first. Steps alternate between the two
// planes, so that a noisy moment hits both.

type overloadParams struct {
	Levels       []float64     `json:"levels"`
	Step         time.Duration `json:"step_ns"`
	Sleep        time.Duration `json:"sleep_ns"`
	Instances    int           `json:"instances"`
	Concurrency  int           `json:"concurrency"`
	QueueTimeout time.Duration `json:"queue_timeout_ns"`
}

type overloadStep struct {
	Level   float64 `json:"level"`
	Offered float64 `json:"offered"` // requests/s
	Sent    int     `json:"sent"`
	OK      int     `json:"ok"`
	// Goodput is 200 answers per second from the step's start until its
	// last answer (a queue that drains after the sending stopped counts
	// over the time it took); PerSecond is the spread of its whole
	// one-second buckets, by arrival of the answers.
	Goodput   float64        `json:"goodput"`
	PerSecond Spread         `json:"goodput_per_second"`
	Admitted  Latencies      `json:"admitted"` // latency of the 200 answers
	Errors    map[string]int `json:"errors,omitempty"`
}

type overloadMode struct {
	Name     string         `json:"name"`
	Shedding bool           `json:"shedding"`
	Steps    []overloadStep `json:"steps"`
}

type overloadResult struct {
	Meta   Meta           `json:"meta"`
	Params overloadParams `json:"params"`
	// Nominal is instances × concurrency / sleep; Capacity is measured
	// (closed loop with twice as many clients as slots, median of the
	// runs in CapacityRuns).
	Nominal      float64        `json:"nominal"`
	Capacity     float64        `json:"capacity"`
	CapacityRuns []float64      `json:"capacity_runs"`
	Modes        []overloadMode `json:"modes"`
}

func runOverload(ctx context.Context, e *env, p overloadParams) (*overloadResult, error) {
	res := &overloadResult{Meta: newMeta("overload", e.command), Params: p}
	res.Nominal = float64(p.Instances*p.Concurrency) / p.Sleep.Seconds()
	if err := e.art.build(ctx); err != nil {
		return nil, err
	}
	sleepPkg, err := gzipTarPrefix(e.art.sleep, "sleep")
	if err != nil {
		return nil, err
	}
	if sleepPkg, err = variant(sleepPkg, "sleep", ""); err != nil {
		return nil, err
	}
	ref := e.origin().put("sleep.tar.gz", sleepPkg)
	query := fmt.Sprintf("/?ms=%d", p.Sleep.Milliseconds())
	timeout := p.QueueTimeout + p.Sleep + 10*time.Second

	res.Modes = []overloadMode{{Name: "shedding on", Shedding: true}, {Name: "shedding off"}}
	targets := make([]*target, 2)
	for i, m := range res.Modes {
		pl, err := startPlane(ctx, e.art, filepath.Join(e.tmp, fmt.Sprintf("overload-%d", i)), faas.Config{
			Pool:            warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: p.Instances + 1}}},
			DisableShedding: !m.Shedding,
			NodeID:          "bench-overload-" + strings.ReplaceAll(m.Name, " ", "-"),
		})
		if err != nil {
			return nil, err
		}
		defer pl.close()
		if err := pl.dp.Deploy(ctx, faas.FunctionSpec{
			ID: "sleep", Runtime: "go", Code: ref, Concurrency: p.Concurrency,
			MinInstances: p.Instances, MaxInstances: p.Instances, KeepAlive: time.Hour,
			QueueTimeout: p.QueueTimeout, RequestTimeout: p.QueueTimeout + p.Sleep + 5*time.Second,
		}); err != nil {
			return nil, err
		}
		if err := pl.waitInstances(ctx, "sleep", p.Instances, time.Minute); err != nil {
			return nil, err
		}
		hdr := http.Header{lifecycle.HeaderFunctionID: {"sleep"}, lifecycle.HeaderCaller: {"bench"}}
		targets[i] = newTarget(m.Name, pl.url+query, hdr, timeout)
		defer targets[i].close()
	}

	// Capacity: closed loop on the plane without shedding, twice as many
	// clients as slots so that every slot is always taken.
	slots := p.Instances * p.Concurrency
	closedLoop(ctx, targets[1], slots, p.Step/3) // warm-up
	for range 2 {
		o := closedLoop(ctx, targets[1], 2*slots, p.Step)
		res.CapacityRuns = append(res.CapacityRuns, float64(len(o.lat))/o.elapsed.Seconds())
	}
	res.Capacity = spreadOf(res.CapacityRuns).Median
	e.logf("overload: capacity %.1f req/s measured (nominal %.1f)", res.Capacity, res.Nominal)
	if res.Capacity <= 0 {
		return nil, fmt.Errorf("overload: measured no capacity")
	}

	for li, level := range p.Levels {
		order := []int{0, 1}
		if li%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			rate := level * res.Capacity
			// The same arrival times for both modes of a level.
			rng := rand.New(rand.NewPCG(uint64(li), 2))
			o := openLoop(ctx, targets[i], rate, p.Step, 16384, rng, true)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			st := overloadStep{Level: level, Offered: rate, Sent: o.sent + o.dropped, OK: len(o.lat), Errors: o.byStatus,
				Goodput: float64(len(o.lat)) / o.elapsed.Seconds(), Admitted: summarize(o.lat)}
			if o.dropped > 0 {
				st.Errors["client: not sent, 16384 outstanding"] = o.dropped
			}
			st.PerSecond = perSecond(o.okDone, o.elapsed)
			res.Modes[i].Steps = append(res.Modes[i].Steps, st)
			e.logf("overload: %s at %g× (%.0f req/s): goodput %.1f/s, admitted p99 %s, %s", res.Modes[i].Name, level, rate,
				st.Goodput, fmtUS(st.Admitted.P99), fmtCounts(st.Errors))
		}
	}
	res.Meta.finish()
	return res, nil
}

// perSecond is the spread of 200 answers per whole second of elapsed
// (a final partial second is left out).
func perSecond(okDone []time.Duration, elapsed time.Duration) Spread {
	n := int(elapsed / time.Second)
	if n < 1 {
		return spreadOf([]float64{float64(len(okDone)) / elapsed.Seconds()})
	}
	counts := make([]float64, n)
	for _, at := range okDone {
		if s := int(at / time.Second); s < n {
			counts[s]++
		}
	}
	return spreadOf(counts)
}

func overloadChart(r *overloadResult) *svgplot.Chart {
	c := &svgplot.Chart{
		Title:  fmt.Sprintf("Overload: sleep %v on %d instances × %d slots, capacity %.0f req/s", r.Params.Sleep, r.Params.Instances, r.Params.Concurrency, r.Capacity),
		XLabel: "offered load (× measured capacity)",
		LogX:   true,
		Panels: []Panel{{YLabel: "goodput (200 OK/s)"}, {YLabel: "admitted p99 (ms)", LogY: true}},
	}
	ideal := svgplot.Series{Name: "ideal: min(offered, capacity)", Dashed: true}
	for _, l := range r.Params.Levels {
		ideal.X = append(ideal.X, l)
		ideal.Y = append(ideal.Y, math.Min(l, 1)*r.Capacity)
	}
	c.Panels[0].Series = append(c.Panels[0].Series, ideal)
	for _, m := range r.Modes {
		g := svgplot.Series{Name: m.Name, Markers: true}
		p := svgplot.Series{Name: m.Name, Markers: true}
		for _, s := range m.Steps {
			g.X, g.Y = append(g.X, s.Level), append(g.Y, s.Goodput)
			if s.OK > 0 {
				p.X, p.Y = append(p.X, s.Level), append(p.Y, math.Max(s.Admitted.P99/1000, 0.01))
			}
		}
		c.Panels[0].Series = append(c.Panels[0].Series, g)
		c.Panels[1].Series = append(c.Panels[1].Series, p)
	}
	return c
}

// Panel is svgplot.Panel (shorter literals).
type Panel = svgplot.Panel

func overloadMarkdown(r *overloadResult, svg string) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("one %v step per load level and mode, the two modes alternating; goodput spread is over the step's one-second buckets", r.Params.Step)))
	fmt.Fprintf(&b, "\nSetup: function `sleep` (%v per request), %d instances × concurrency %d (fixed: MinInstances = MaxInstances), QueueTimeout %v, one caller. "+
		"Capacity measured first: **%.1f req/s** (runs %s; nominal %.0f). Load is open-loop Poisson; latency counts from the intended send time.\n\n",
		r.Params.Sleep, r.Params.Instances, r.Params.Concurrency, r.Params.QueueTimeout, r.Capacity, joinF(r.CapacityRuns), r.Nominal)
	fmt.Fprintf(&b, "![goodput and admitted p99 against offered load](%s)\n\n", svg)
	var rows [][]string
	for i, level := range r.Params.Levels {
		row := []string{fmt.Sprintf("%g×", level), fmt.Sprintf("%.0f", level*r.Capacity)}
		for _, m := range r.Modes {
			if i >= len(m.Steps) {
				row = append(row, "—", "—", "—")
				continue
			}
			s := m.Steps[i]
			g := fmtRate(s.Goodput)
			if s.PerSecond.N > 1 {
				g += fmt.Sprintf(" (%s–%s)", fmtRate(s.PerSecond.Min), fmtRate(s.PerSecond.Max))
			}
			row = append(row, g, fmtUS(s.Admitted.P99), refusals(s))
		}
		rows = append(rows, row)
	}
	b.WriteString(table([]string{"offered", "req/s", "goodput, shedding on (range of 1-s buckets)", "admitted p99, on", "refused, on",
		"goodput, shedding off (range of 1-s buckets)", "admitted p99, off", "refused, off"}, "rrrrlrrl", rows))
	return b.String()
}

func refusals(s overloadStep) string {
	if len(s.Errors) == 0 {
		return "0"
	}
	return fmtCounts(s.Errors)
}

func joinF(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(parts, ", ")
}
