package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// summaryMarkdown checks the targets of issues 7 and 9 against whatever
// results are in dir (each scenario's latest run), so that the summary at
// the top of BENCHMARKS.md is regenerated with the figures it quotes.
func summaryMarkdown(dir string) (string, error) {
	var rows [][]string
	var total float64
	var ran []string
	load := func(name string, v any) (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, json.Unmarshal(b, v)
	}
	mark := func(ok bool) string {
		if ok {
			return "✔"
		}
		return "✘"
	}
	note := func(m Meta) {
		total += m.Seconds
		ran = append(ran, fmt.Sprintf("%s %s (load %.1f→%.1f)", m.Scenario, m.Start.Format("2006-01-02 15:04"), m.LoadBefore[0], m.LoadAfter[0]))
	}

	var hop hopResult
	if ok, err := load("hop", &hop); err != nil {
		return "", err
	} else if ok {
		note(hop.Meta)
		for _, m := range hop.Modes {
			rows = append(rows, []string{"hop overhead: faasplane's added p50 ≤ 1.3× the bare chain's (issue 7), " + m.Name,
				fmt.Sprintf("%.2f (middle half %.2f–%.2f)", m.Ratio.Median, m.Ratio.P25, m.Ratio.P75), mark(m.Ratio.Median <= 1.3)})
		}
	}
	var cold coldResult
	if ok, err := load("coldstart", &cold); err != nil {
		return "", err
	} else if ok && len(cold.Cases) > 0 {
		note(cold.Meta)
		t := cold.Cases[0].Steps["total"]
		rows = append(rows,
			[]string{"cold start, warm-pool hit, code cached: p50 ≤ 15 ms (issue 7)", fmtMS(t.P50) + " ms", mark(t.P50 <= 15)},
			[]string{"cold start, warm-pool hit, code cached: p99 ≤ 50 ms (issue 7)", fmtMS(t.P99) + " ms", mark(t.P99 <= 50)})
		for _, c := range cold.Cases[1:] {
			rows = append(rows, []string{"cold start, " + c.Name + " (reported, no target)",
				fmt.Sprintf("p50 %s / p99 %s ms", fmtMS(c.Steps["total"].P50), fmtMS(c.Steps["total"].P99)), "—"})
		}
	}
	var hot hotResult
	if ok, err := load("hotpath", &hot); err != nil {
		return "", err
	} else if ok {
		note(hot.Meta)
		rows = append(rows, hotTargets(hot, mark)...)
	}
	var ov overloadResult
	if ok, err := load("overload", &ov); err != nil {
		return "", err
	} else if ok {
		note(ov.Meta)
		for _, m := range ov.Modes {
			if len(m.Steps) == 0 {
				continue
			}
			last := m.Steps[len(m.Steps)-1]
			rows = append(rows, []string{fmt.Sprintf("overload at %g× capacity, %s (no target): goodput / capacity, admitted p99", last.Level, m.Name),
				fmt.Sprintf("%.2f, %s", last.Goodput/ov.Capacity, fmtUS(last.Admitted.P99)), "—"})
		}
	}
	for _, name := range []string{"lb", "sharding"} {
		var v struct{ Meta Meta }
		if ok, err := load(name, &v); err != nil {
			return "", err
		} else if ok {
			note(v.Meta)
		}
	}
	if len(ran) == 0 {
		return "", nil
	}
	rows = append(rows, []string{"`go run ./bench` with the defaults finishes in under 5 minutes (issue 9): the scenarios' run times, summed",
		fmt.Sprintf("%.0f s", total), mark(total < 300)})
	var b strings.Builder
	b.WriteString("Checked against the latest result of each scenario in `bench/results` (" + strings.Join(ran, "; ") + "); details in the sections below.\n\n")
	b.WriteString(table([]string{"target", "measured", "met"}, "lrl", rows))
	return b.String(), nil
}

// hotTargets checks the root package's hot-path targets: ≤ 60 ns/op and 0
// allocs at 100 instances, ≤ 10 % slower with 100,000 functions.
func hotTargets(r hotResult, mark func(bool) string) [][]string {
	var one, many *BenchStat
	for _, p := range r.Packages {
		if p.Dir != "." {
			continue
		}
		for i := range p.Stats {
			switch p.Stats[i].Name {
			case "HotPath/functions=1/instances=100":
				one = &p.Stats[i]
			case "HotPath/functions=100000/instances=100":
				many = &p.Stats[i]
			}
		}
	}
	if one == nil {
		return [][]string{{"Dataplane hot path ≤ 60 ns/op, 0 allocs at 100 instances (issue 7)", "no BenchmarkHotPath result", "—"}}
	}
	ns, allocs := one.Metrics["ns/op"].Median, one.Metrics["allocs/op"].Max
	rows := [][]string{
		{"Dataplane hot path ≤ 60 ns/op at 100 instances (issue 7)", fmtNS(ns), mark(ns <= 60)},
		{"Dataplane hot path 0 allocs/op (issue 7)", fmt.Sprintf("%g", allocs), mark(allocs == 0)},
	}
	if many != nil {
		m := many.Metrics["ns/op"].Median
		rows = append(rows, []string{"Dataplane hot path with 100,000 functions ≤ 10 % slower (issue 7)",
			fmt.Sprintf("%s, %+.0f %% (range %s–%s)", fmtNS(m), 100*(m/ns-1), fmtNS(many.Metrics["ns/op"].Min), fmtNS(many.Metrics["ns/op"].Max)), mark(m <= 1.1*ns)})
	}
	return rows
}
