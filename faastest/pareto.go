package faastest

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/faasplane/faas/internal/svgplot"
)

// ParetoPoint is one configuration's place on the keep-alive trade-off of
// "Serverless in the Wild" (Shahrad et al., ATC 2020): cold starts
// against the memory-time wasted on idle instances.
type ParetoPoint struct {
	// Series groups the points of one policy family (a line on the
	// chart), Label names the point ("10 min").
	Series, Label string
	// ColdStartRatio is the share of the completed invocations that were
	// cold; ColdStartP75 the third quartile, over the functions with
	// invocations, of each function's cold-start ratio (the paper's
	// y axis).
	ColdStartRatio float64
	ColdStartP75   float64
	// IdleGBSeconds is the wasted memory-time (Stats.IdleGBSeconds).
	IdleGBSeconds float64
	// Decided lists the limits that decided the run (Report.Decided); a
	// point a limit decided compares the limit, not the policy.
	Decided []string
}

// Pareto returns the point of a report.
func Pareto(series, label string, r *Report) ParetoPoint {
	var ratios []float64
	for _, f := range r.Functions {
		if f.Completed > 0 {
			ratios = append(ratios, f.ColdStartRatio)
		}
	}
	slices.Sort(ratios)
	p := ParetoPoint{Series: series, Label: label, ColdStartRatio: r.Total.ColdStartRatio, IdleGBSeconds: r.Total.IdleGBSeconds}
	if n := len(ratios); n > 0 {
		p.ColdStartP75 = ratios[min(n-1, (3*n+3)/4-1)]
	}
	for _, f := range r.Decided() {
		p.Decided = append(p.Decided, f.Limit)
	}
	return p
}

// ParetoPanel is one chart panel: the points of one workload.
type ParetoPanel struct {
	// Title names the workload, briefly: it heads the panel's y axis.
	Title string
	// Points are the configurations run on it.
	Points []ParetoPoint
	// Reference is the idle memory-time the x axis is normalized to (the
	// paper normalizes to a 10-minute fixed keep-alive); zero plots GB-s.
	Reference float64
}

// WritePareto draws the panels as the paper's Pareto plot, as SVG: the
// third quartile of the functions' cold-start ratios (%) against the
// wasted memory-time, one line per series in the order of its idle
// memory-time, one panel per workload. Points a limit decided are named
// so in the legend.
func WritePareto(w io.Writer, title string, panels []ParetoPanel) error {
	chart := &svgplot.Chart{Title: title, XLabel: "wasted memory-time (idle GB-seconds)"}
	normalized := len(panels) > 0
	for _, p := range panels {
		normalized = normalized && p.Reference > 0
	}
	if normalized {
		chart.XLabel = "wasted memory-time (% of the 10-minute fixed keep-alive's)"
	}
	for _, p := range panels {
		panel := svgplot.Panel{YLabel: p.Title + ": cold % (p75)"}
		var names []string
		by := map[string][]ParetoPoint{}
		for _, pt := range p.Points {
			if _, ok := by[pt.Series]; !ok {
				names = append(names, pt.Series)
			}
			by[pt.Series] = append(by[pt.Series], pt)
		}
		for _, name := range names {
			pts := by[name]
			slices.SortStableFunc(pts, func(a, b ParetoPoint) int { return cmp.Compare(a.IdleGBSeconds, b.IdleGBSeconds) })
			s := svgplot.Series{Name: name, Markers: true}
			limited := 0
			for _, pt := range pts {
				x := pt.IdleGBSeconds
				if normalized {
					x = 100 * x / p.Reference
				}
				s.X = append(s.X, x)
				s.Y = append(s.Y, 100*pt.ColdStartP75)
				if len(pt.Decided) > 0 {
					limited++
				}
			}
			if limited > 0 {
				s.Name = fmt.Sprintf("%s (%d decided by limits)", name, limited)
			}
			panel.Series = append(panel.Series, s)
		}
		chart.Panels = append(chart.Panels, panel)
	}
	return chart.Render(w)
}
