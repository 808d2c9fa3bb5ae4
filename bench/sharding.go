package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/faasplane/faas/sharding"
)

// Sharding: the sharding package's own benchmarks (Pick, Rank(3), parallel
// Pick, 8 to 4096 nodes) through go test -bench, and, in process, the
// balance and the movement of keys on a table of equal nodes.

type shardParams struct {
	Count     int    `json:"count"`
	Benchtime string `json:"benchtime"`
	Keys      int    `json:"keys"`
	Nodes     []int  `json:"nodes"`
	// Bench is the -bench pattern (default: Pick, Rank3, PickParallel).
	Bench string `json:"bench"`
}

type shardBalance struct {
	Nodes int `json:"nodes"`
	Keys  int `json:"keys"`
	// MaxOverMean is the busiest node's keys over the mean; MinOverMean
	// the idlest's.
	MaxOverMean float64 `json:"max_over_mean"`
	MinOverMean float64 `json:"min_over_mean"`
	// AddMoved is the share of keys that moved when a node was added
	// (ideal 1/(n+1)); AddOnlyToNew says every moved key went to it.
	AddMoved     float64 `json:"add_moved"`
	AddOnlyToNew bool    `json:"add_only_to_new"`
	// RemoveMoved is the share that moved when a node was removed (ideal
	// its share, about 1/n); RemoveOnlyItsKeys says no other key moved.
	RemoveMoved       float64 `json:"remove_moved"`
	RemoveOnlyItsKeys bool    `json:"remove_only_its_keys"`
}

type shardResult struct {
	Meta    Meta           `json:"meta"`
	Params  shardParams    `json:"params"`
	Command string         `json:"go_test_command"`
	Benches []BenchStat    `json:"benchmarks"`
	Balance []shardBalance `json:"balance"`
}

func runSharding(ctx context.Context, e *env, p shardParams) (*shardResult, error) {
	if p.Bench == "" {
		p.Bench = "^Benchmark(Pick|Rank3|PickParallel)$"
	}
	res := &shardResult{Meta: newMeta("sharding", e.command), Params: p}
	out, cmd, err := goTestBench(ctx, e.root, "./sharding", p.Bench, p.Benchtime, p.Count)
	if err != nil {
		return nil, err
	}
	res.Command = cmd
	lines, err := parseBench(strings.NewReader(string(out)))
	if err != nil {
		return nil, err
	}
	res.Benches = aggregate(lines)
	if len(res.Benches) == 0 {
		return nil, fmt.Errorf("%s printed no benchmark results", cmd)
	}
	e.logf("sharding: %d benchmarks × %d runs", len(res.Benches), p.Count)

	keys := make([]uint64, p.Keys)
	for i := range keys {
		keys[i] = sharding.Hash("function-" + strconv.Itoa(i))
	}
	for _, n := range p.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bal, err := shardBalanceOf(n, keys)
		if err != nil {
			return nil, err
		}
		res.Balance = append(res.Balance, bal)
		e.logf("sharding: %d nodes: max/mean %.3f, add moves %.4f, remove moves %.4f", n, bal.MaxOverMean, bal.AddMoved, bal.RemoveMoved)
	}
	res.Meta.finish()
	return res, nil
}

// owners returns the index of each key's owner in t, in parallel.
func owners(t *sharding.Table, index map[string]int32, keys []uint64) []int32 {
	out := make([]int32, len(keys))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	chunk := (len(keys) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(keys))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				nd, _ := t.PickHash(keys[i])
				out[i] = index[nd.ID]
			}
		}()
	}
	wg.Wait()
	return out
}

func shardBalanceOf(n int, keys []uint64) (shardBalance, error) {
	nodes := make([]sharding.Node, n+1)
	index := map[string]int32{}
	for i := range nodes {
		nodes[i] = sharding.Node{ID: fmt.Sprintf("dataplane-%d", i), Weight: 1}
		index[nodes[i].ID] = int32(i)
	}
	base, err := sharding.New(nodes[:n]...)
	if err != nil {
		return shardBalance{}, err
	}
	before := owners(base, index, keys)
	counts := make([]int, n)
	for _, o := range before {
		counts[o]++
	}
	mean := float64(len(keys)) / float64(n)
	lo, hi := counts[0], counts[0]
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
	}
	b := shardBalance{Nodes: n, Keys: len(keys), MaxOverMean: float64(hi) / mean, MinOverMean: float64(lo) / mean,
		AddOnlyToNew: true, RemoveOnlyItsKeys: true}

	added, err := base.Add(nodes[n])
	if err != nil {
		return b, err
	}
	moved := 0
	for i, o := range owners(added, index, keys) {
		if o != before[i] {
			moved++
			if o != int32(n) {
				b.AddOnlyToNew = false
			}
		}
	}
	b.AddMoved = float64(moved) / float64(len(keys))

	removed, err := base.Remove(nodes[0].ID)
	if err != nil {
		return b, err
	}
	moved = 0
	for i, o := range owners(removed, index, keys) {
		if o != before[i] {
			moved++
			if before[i] != 0 {
				b.RemoveOnlyItsKeys = false
			}
		}
	}
	b.RemoveMoved = float64(moved) / float64(len(keys))
	return b, nil
}

// nodesOf extracts "nodes=N" from a sub-benchmark name.
func nodesOf(name string) (string, int) {
	i := strings.Index(name, "nodes=")
	if i < 0 {
		return name, 0
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(name[i:], "nodes="))
	return strings.TrimSuffix(name[:i], "/"), n
}

func shardMarkdown(r *shardResult) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("lookups: median of %d runs of `%s` with range", r.Params.Count, r.Command)))
	// Lookups: one row per benchmark variant, one column per node count.
	var variants []string
	var sizes []int
	cells := map[string]map[int]string{}
	allocs := 0.0
	for _, s := range r.Benches {
		v, n := nodesOf(s.Name)
		if _, ok := cells[v]; !ok {
			variants = append(variants, v)
			cells[v] = map[int]string{}
		}
		if !containsInt(sizes, n) {
			sizes = append(sizes, n)
		}
		cells[v][n] = fmtSpread(s.Metrics["ns/op"], fmtNS)
		allocs = max(allocs, s.Metrics["allocs/op"].Max)
	}
	hdr := []string{"benchmark (ns/op)"}
	for _, n := range sizes {
		hdr = append(hdr, fmt.Sprintf("%d nodes", n))
	}
	var rows [][]string
	for _, v := range variants {
		row := []string{v}
		for _, n := range sizes {
			row = append(row, orDash(cells[v][n]))
		}
		rows = append(rows, row)
	}
	fmt.Fprintf(&b, "\nLookups (the `go test` command above is what this suite ran; most allocs/op seen: %g):\n\n", allocs)
	b.WriteString(table(hdr, "l"+strings.Repeat("r", len(sizes)), rows))
	fmt.Fprintf(&b, "\nBalance and movement, equal weights, %d keys `function-0…` (in process, `sharding.Table.PickHash`):\n\n", r.Params.Keys)
	rows = rows[:0]
	for _, x := range r.Balance {
		rows = append(rows, []string{strconv.Itoa(x.Nodes), fmt.Sprintf("%.0f", float64(x.Keys)/float64(x.Nodes)),
			fmt.Sprintf("%.3f", x.MaxOverMean), fmt.Sprintf("%.3f", x.MinOverMean),
			fmt.Sprintf("%.4f (ideal %.4f)", x.AddMoved, 1/float64(x.Nodes+1)), yesNo(x.AddOnlyToNew),
			fmt.Sprintf("%.4f (ideal %.4f)", x.RemoveMoved, 1/float64(x.Nodes)), yesNo(x.RemoveOnlyItsKeys)})
	}
	b.WriteString(table([]string{"nodes", "keys per node", "max/mean", "min/mean", "moved on add", "only to the new node",
		"moved on remove", "only the removed node's"}, "rrrrrlrl", rows))
	return b.String()
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "**no**"
}
