package faastest

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faasplane/faas/internal/svgplot"
)

// WriteJSON writes the report as indented JSON. Durations are integer
// nanoseconds (fields ending in _ns); the output is deterministic.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as a text table: the total, then the top
// functions with the most invocations (ties by ID).
func (r *Report) WriteText(w io.Writer, top int) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "run %q (seed %d, policy %s): %d functions, %v virtual, %d events\n",
		r.Name, r.Seed, r.Policy, len(r.Functions), r.Duration.Round(time.Millisecond), r.Events)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "function\tinvocations\tcold\tshed\tfailed\tp50\tp95\tp99\tmax\tqueue mean\tinstance-s\tidle-s\t")
	row := func(name string, s *Stats) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t\n", name, s.Invocations,
			pct(s.ColdStartRatio), pct(s.ShedRatio), pct(s.FailedRatio),
			dur(s.Latency.P50), dur(s.Latency.P95), dur(s.Latency.P99), dur(s.Latency.Max), dur(s.QueueTime.Mean),
			s.InstanceSeconds, s.IdleInstanceSeconds)
	}
	row("total", &r.Total)
	fns := slices.Clone(r.Functions)
	slices.SortStableFunc(fns, func(a, b FunctionReport) int { return cmp.Compare(b.Invocations, a.Invocations) })
	for i := range fns[:min(max(top, 0), len(fns))] {
		row(fns[i].ID, &fns[i].Stats)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	cs := &r.Total.ColdStart
	fmt.Fprintf(bw, "cold starts: %d, mean %s (gate %s, pod %s, fetch %s, load %s, init %s); code from node %d, shared %d, origin %d\n",
		r.Total.ColdStarts, dur(cs.Mean), dur(cs.Gate), dur(cs.Pod), dur(cs.Fetch), dur(cs.Load), dur(cs.Init),
		cs.LocalFetches, cs.SharedFetches, cs.OriginFetches)
	for _, p := range r.Pools {
		fmt.Fprintf(bw, "pool %s: %d pods created, %d taken, %.0f idle pod-seconds, peak %d idle\n",
			p.Runtime, p.Created, p.Taken, p.IdlePodSeconds, p.PeakIdle)
	}
	if f := r.Failures; f != (FailureReport{}) || r.Total.Failed > 0 {
		fmt.Fprintf(bw, "failures: %d crashes, %d nodes lost, %d cold starts lost; %d invocations failed, %d retried\n",
			f.Crashes, f.NodesLost, f.ColdStartsFailed, r.Total.Failed, r.Total.Retried)
	}
	if len(r.Dataplanes) > 1 {
		var fwd, arrived int64
		for _, dp := range r.Dataplanes {
			fwd += dp.Forwarded
			arrived += dp.Arrived
		}
		fmt.Fprintf(bw, "dataplanes: %d, %s of the invocations forwarded to their owner\n", len(r.Dataplanes), pct(ratio(fwd, arrived)))
	}
	fmt.Fprintln(bw, decidedLine(r))
	return bw.Flush()
}

// decidedLine says whether limits or the policies decided the run.
func decidedLine(r *Report) string {
	d := r.Decided()
	if len(d) == 0 {
		return "decided by the policies: no limit refused 1% of the invocations or delayed 10% of the cold starts"
	}
	texts := make([]string, len(d))
	for i, f := range d {
		texts[i] = f.Text
	}
	return "decided by limits, not by the policies: " + strings.Join(texts, "; ")
}

func pct(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }

// dur prints a duration with three significant digits.
func dur(d time.Duration) string {
	switch a := d.Abs(); {
	case a == 0:
		return "0"
	case a < time.Microsecond:
		return d.String()
	case a < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/1e3)
	case a < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.3gs", d.Seconds())
	}
}

// WriteSVG draws the report's timeline: instances (alive and idle) and the
// warm pool's idle pods, requests in flight and queued, and cold starts
// per interval, over virtual time.
func (r *Report) WriteSVG(w io.Writer) error {
	return timelineChart(fmt.Sprintf("%s: timeline", cmp.Or(r.Name, "simulation")), []*Report{r}).Render(w)
}

// chartPoints bounds the points of one series in a chart.
const chartPoints = 600

// timelineChart draws the timelines of one or two reports, the second
// dashed.
func timelineChart(title string, rs []*Report) *svgplot.Chart {
	var end time.Duration
	for _, r := range rs {
		if n := len(r.Timeline); n > 0 {
			end = max(end, r.Timeline[n-1].T)
		}
	}
	unit, label := time.Second, "virtual time (s)"
	switch {
	case end > 3*time.Hour:
		unit, label = time.Hour, "virtual time (h)"
	case end > 10*time.Minute:
		unit, label = time.Minute, "virtual time (min)"
	}
	panels := []svgplot.Panel{{YLabel: "instances"}, {YLabel: "requests"}, {YLabel: "cold starts"}}
	for i, r := range rs {
		// An 800-pixel chart shows at most chartPoints points a series;
		// coarser points keep the peaks and every cold start.
		k := (len(r.Timeline) + chartPoints - 1) / chartPoints
		points, step := coarsen(r.Timeline, k), r.TimelineStep*time.Duration(max(k, 1))
		name := func(s string) string {
			if len(rs) == 1 {
				return s
			}
			return cmp.Or(r.Name, fmt.Sprintf("run %d", i+1)) + ": " + s
		}
		pick := func(f func(TimelinePoint) int) (x, y []float64) {
			x = make([]float64, len(points))
			y = make([]float64, len(points))
			for k, p := range points {
				x[k] = float64(p.T) / float64(unit)
				y[k] = float64(f(p))
			}
			return x, y
		}
		series := func(s string, f func(TimelinePoint) int) svgplot.Series {
			x, y := pick(f)
			return svgplot.Series{Name: name(s), X: x, Y: y, Step: true, Dashed: i == 1}
		}
		panels[0].Series = append(panels[0].Series,
			series("alive", func(p TimelinePoint) int { return p.Instances }),
			series("idle", func(p TimelinePoint) int { return p.Idle }),
			series("idle pods", func(p TimelinePoint) int { return p.IdlePods }))
		panels[1].Series = append(panels[1].Series,
			series("in flight", func(p TimelinePoint) int { return p.InFlight }),
			series("queued", func(p TimelinePoint) int { return p.Queued }))
		panels[2].Series = append(panels[2].Series,
			series(fmt.Sprintf("per %v", step), func(p TimelinePoint) int { return p.ColdStarts }))
	}
	return &svgplot.Chart{Title: title, XLabel: label, Panels: panels}
}

// Comparison holds the reports of two configurations run on the same
// workload.
type Comparison struct {
	A, B *Report
}

// Compare runs configurations a and b on the workloads workload returns (it
// is called once per run and must return the same arrivals each time).
func Compare(a, b Config, workload func() Workload) (*Comparison, error) {
	ra, err := Run(a, workload())
	if err != nil {
		return nil, fmt.Errorf("faastest: config %q: %w", a.Name, err)
	}
	rb, err := Run(b, workload())
	if err != nil {
		return nil, fmt.Errorf("faastest: config %q: %w", b.Name, err)
	}
	return &Comparison{A: ra, B: rb}, nil
}

// WriteText writes the two reports' totals side by side, with B's change
// relative to A.
func (c *Comparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	a, b := &c.A.Total, &c.B.Total
	fmt.Fprintf(tw, "\t%s\t%s\tchange\t\n", cmp.Or(c.A.Name, "A"), cmp.Or(c.B.Name, "B"))
	count := func(name string, x, y int64) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", name, x, y, change(float64(x), float64(y)))
	}
	share := func(name string, x, y float64) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, pct(x), pct(y), change(x, y))
	}
	time_ := func(name string, x, y time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, dur(x), dur(y), change(float64(x), float64(y)))
	}
	secs := func(name string, x, y float64) {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t\n", name, x, y, change(x, y))
	}
	count("invocations", a.Invocations, b.Invocations)
	count("completed", a.Completed, b.Completed)
	count("cold invocations", a.ColdInvocations, b.ColdInvocations)
	share("cold-start ratio", a.ColdStartRatio, b.ColdStartRatio)
	share("shed ratio", a.ShedRatio, b.ShedRatio)
	share("failed ratio", a.FailedRatio, b.FailedRatio)
	time_("latency mean", a.Latency.Mean, b.Latency.Mean)
	time_("latency p50", a.Latency.P50, b.Latency.P50)
	time_("latency p95", a.Latency.P95, b.Latency.P95)
	time_("latency p99", a.Latency.P99, b.Latency.P99)
	time_("latency max", a.Latency.Max, b.Latency.Max)
	time_("queue time mean", a.QueueTime.Mean, b.QueueTime.Mean)
	time_("queue time p99", a.QueueTime.P99, b.QueueTime.P99)
	count("cold starts", a.ColdStarts, b.ColdStarts)
	time_("cold start mean", a.ColdStart.Mean, b.ColdStart.Mean)
	secs("instance-seconds", a.InstanceSeconds, b.InstanceSeconds)
	secs("idle instance-seconds", a.IdleInstanceSeconds, b.IdleInstanceSeconds)
	count("peak instances", int64(a.PeakInstances), int64(b.PeakInstances))
	secs("idle pod-seconds", poolSeconds(c.A), poolSeconds(c.B))
	secs("GB-seconds", a.GBSeconds, b.GBSeconds)
	secs("idle GB-seconds", a.IdleGBSeconds, b.IdleGBSeconds)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: %s\n%s: %s\n", cmp.Or(c.A.Name, "A"), decidedLine(c.A), cmp.Or(c.B.Name, "B"), decidedLine(c.B))
	return err
}

func poolSeconds(r *Report) float64 {
	var s float64
	for _, p := range r.Pools {
		s += p.IdlePodSeconds
	}
	return s
}

// change prints y's change relative to x.
func change(x, y float64) string {
	switch {
	case x == y:
		return "="
	case x == 0:
		return "new"
	}
	c := 100 * (y - x) / math.Abs(x)
	return fmt.Sprintf("%+.1f%%", c)
}

// WriteSVG draws both timelines on one chart, B dashed.
func (c *Comparison) WriteSVG(w io.Writer) error {
	title := fmt.Sprintf("%s vs %s", cmp.Or(c.A.Name, "A"), cmp.Or(c.B.Name, "B"))
	return timelineChart(title, []*Report{c.A, c.B}).Render(w)
}
