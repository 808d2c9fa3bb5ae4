package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Hot path: the in-process benchmarks of the request path (pick, acquire,
// release, shed admission), run with go test -bench -count=N and
// summarized as median and range. The root package's BenchmarkHotPath*
// (the whole admit → pick → acquire → release path of the Dataplane) are
// included when they exist.

type hotPackage struct {
	Dir   string `json:"dir"`
	Bench string `json:"bench"`
	// Benchtime, when set, overrides the scenario's -benchtime for this
	// package.
	Benchtime string `json:"benchtime,omitempty"`
}

// benchtime is the -benchtime the package runs with: its own, or def (the
// scenario's). Running and rendering both use it, so that the report states
// what ran.
func (p hotPackage) benchtime(def string) string { return cmp.Or(p.Benchtime, def) }

var defaultHotPackages = []hotPackage{
	// One second per run: the root's runs compare a dataplane with one
	// function and one with 100,000, and short runs of the latter swing
	// with the collector and the page layout of its large heap.
	{Dir: ".", Bench: "^BenchmarkHotPath", Benchtime: "1s"},
	// The default policy only: the lb scenario compares the policies.
	{Dir: "./router", Bench: "^Benchmark(PickRelease|PickReleaseParallel)$/^p2c/"},
	{Dir: "./router", Bench: "^Benchmark(PickReleaseTableSize|AcquireRelease)$"},
	{Dir: "./concurrency", Bench: "^Benchmark(SlotsTryAcquireRelease|SlotsTryAcquireReleaseParallel|FunctionLimitAcquireRelease|QueueAcquireFree|QueueHandoff)$"},
	{Dir: "./loadshed", Bench: "^Benchmark(AdmitDone|AdmitShed|AdmitDoneParallel)$"},
}

type hotParams struct {
	Count     int          `json:"count"`
	Benchtime string       `json:"benchtime"`
	Packages  []hotPackage `json:"packages"`
}

type hotPkgResult struct {
	hotPackage
	Command string      `json:"command"`
	Stats   []BenchStat `json:"stats"`
	// Err is set when go test failed (e.g. the package does not build at
	// this moment); the other packages still report.
	Err string `json:"error,omitempty"`
}

type hotResult struct {
	Meta     Meta           `json:"meta"`
	Params   hotParams      `json:"params"`
	Packages []hotPkgResult `json:"packages"`
}

func runHotPath(ctx context.Context, e *env, p hotParams) (*hotResult, error) {
	res := &hotResult{Meta: newMeta("hotpath", e.command), Params: p}
	failed := 0
	for _, pkg := range p.Packages {
		out, cmd, err := goTestBench(ctx, e.root, pkg.Dir, pkg.Bench, pkg.benchtime(p.Benchtime), p.Count)
		r := hotPkgResult{hotPackage: pkg, Command: cmd}
		if err == nil {
			var lines []benchLine
			lines, err = parseBench(strings.NewReader(string(out)))
			r.Stats = aggregate(lines)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			failed++
			r.Err = err.Error()
			e.logf("hotpath: %s: %v", pkg.Dir, err)
		} else {
			e.logf("hotpath: %s: %d benchmarks", pkg.Dir, len(r.Stats))
		}
		res.Packages = append(res.Packages, r)
	}
	if failed == len(p.Packages) {
		return nil, fmt.Errorf("hotpath: go test -bench failed in every package")
	}
	res.Meta.finish()
	return res, nil
}

// hotMarkdown returns the block of the root package's benchmarks and the
// block of the others.
func hotMarkdown(r *hotResult) (root, others string) {
	var rb, ob strings.Builder
	var rootTimes, otherTimes []string
	for _, p := range r.Packages {
		bt := p.benchtime(r.Params.Benchtime)
		if p.Dir == "." {
			rootTimes = appendNew(rootTimes, bt)
		} else {
			otherTimes = appendNew(otherTimes, bt)
		}
	}
	runs := func(times []string) string {
		if len(times) == 0 {
			times = []string{r.Params.Benchtime}
		}
		return fmt.Sprintf("median of -count=%d runs with range, -benchtime=%s", r.Params.Count, strings.Join(times, " or "))
	}
	rb.WriteString(header(r.Meta, runs(rootTimes)))
	ob.WriteString(header(r.Meta, runs(otherTimes)))
	for _, p := range r.Packages {
		b := &ob
		if p.Dir == "." {
			b = &rb
		}
		fmt.Fprintf(b, "\n`%s`:\n\n", p.Command)
		switch {
		case p.Err != "":
			fmt.Fprintf(b, "go test failed in this run: `%s`\n", firstLine(p.Err))
			continue
		case len(p.Stats) == 0:
			fmt.Fprintf(b, "No benchmark matches `%s` in `%s` yet.\n", p.Bench, p.Dir)
			continue
		}
		b.WriteString(benchTable(p.Stats))
	}
	return rb.String(), ob.String()
}

// benchTable renders benchmarks with ns/op, B/op, allocs/op and any custom
// metrics.
func benchTable(stats []BenchStat) string {
	var extra []string
	for _, s := range stats {
		for _, u := range sortedUnits(s.Metrics) {
			switch u {
			case "ns/op", "B/op", "allocs/op":
			default:
				if !containsStr(extra, u) {
					extra = append(extra, u)
				}
			}
		}
	}
	hdr := append([]string{"benchmark", "ns/op", "B/op", "allocs/op"}, extra...)
	var rows [][]string
	for _, s := range stats {
		row := []string{s.Name, fmtSpread(s.Metrics["ns/op"], func(v float64) string { return fmt.Sprintf("%.4g", v) }),
			fmt.Sprintf("%g", s.Metrics["B/op"].Median), fmt.Sprintf("%g", s.Metrics["allocs/op"].Median)}
		for _, u := range extra {
			if m, ok := s.Metrics[u]; ok {
				row = append(row, fmtSpread(m, func(v float64) string { return fmt.Sprintf("%.4g", v) }))
			} else {
				row = append(row, "")
			}
		}
		rows = append(rows, row)
	}
	return table(hdr, "lrrr"+strings.Repeat("r", len(extra)), rows)
}

// appendNew appends x to xs unless xs holds it already.
func appendNew(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

func containsStr(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
