package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// benchLine is one result line of go test -bench output.
type benchLine struct {
	Pkg  string
	Name string // without the Benchmark prefix's -GOMAXPROCS suffix
	N    int64
	// Metrics maps a unit ("ns/op", "B/op", "allocs/op", custom ones) to
	// its value.
	Metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads the standard benchmark format (as documented in
// golang.org/x/perf/benchfmt): "pkg:" configuration lines set the
// package of the results that follow; a result line is the benchmark's
// name, its iteration count, then value–unit pairs. Other lines (PASS,
// ok, logs) are skipped.
func parseBench(r io.Reader) ([]benchLine, error) {
	var out []benchLine
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(v)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's log line, or a name without results
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		bl := benchLine{Pkg: pkg, Name: procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""), N: n, Metrics: map[string]float64{}}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			bl.Metrics[f[i+1]] = v
		}
		if ok {
			out = append(out, bl)
		}
	}
	return out, sc.Err()
}

// BenchStat is one benchmark over its -count runs: each unit's median and
// range.
type BenchStat struct {
	Pkg     string            `json:"pkg"`
	Name    string            `json:"name"`
	Runs    int               `json:"runs"`
	Metrics map[string]Spread `json:"metrics"`
}

// aggregate groups lines by package and name, in first-seen order.
func aggregate(lines []benchLine) []BenchStat {
	type key struct{ pkg, name string }
	idx := map[key]int{}
	var order []key
	vals := map[key]map[string][]float64{}
	for _, l := range lines {
		k := key{l.Pkg, l.Name}
		if _, ok := idx[k]; !ok {
			idx[k] = len(order)
			order = append(order, k)
			vals[k] = map[string][]float64{}
		}
		for u, v := range l.Metrics {
			vals[k][u] = append(vals[k][u], v)
		}
	}
	out := make([]BenchStat, len(order))
	for i, k := range order {
		s := BenchStat{Pkg: k.pkg, Name: k.name, Metrics: map[string]Spread{}}
		for u, vs := range vals[k] {
			s.Metrics[u] = spreadOf(vs)
			s.Runs = max(s.Runs, len(vs))
		}
		out[i] = s
	}
	return out
}

// goTestBench runs go test -bench in dir (the module root) and returns its
// output and the exact command.
func goTestBench(ctx context.Context, dir, pkg, bench, benchtime string, count int) ([]byte, string, error) {
	args := []string{"test", "-run=^$", "-bench=" + bench, "-benchmem", "-benchtime=" + benchtime, "-count=" + strconv.Itoa(count), pkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	command := "go " + shellJoin(args)
	if err != nil {
		return stdout.Bytes(), command, fmt.Errorf("%s: %w\n%s%s", command, err, tail(stdout.String(), 2000), tail(stderr.String(), 2000))
	}
	return stdout.Bytes(), command, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// shellJoin quotes the arguments that a POSIX shell would split or expand.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " $^|()*?[]{}<>&;'\"\\") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}

func sortedUnits(m map[string]Spread) []string {
	units := make([]string, 0, len(m))
	for u := range m {
		units = append(units, u)
	}
	sort.Strings(units)
	return units
}
