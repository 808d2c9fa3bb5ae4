package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const sampleBench = `goos: linux
goarch: amd64
pkg: github.com/faasplane/faas/router
cpu: AMD EPYC
BenchmarkPickRelease/p2c/instances=10-2         	 1000000	        51.20 ns/op	       0 B/op	       0 allocs/op
BenchmarkPickRelease/p2c/instances=10-2         	 1000000	        49.80 ns/op	       0 B/op	       0 allocs/op
BenchmarkPickRelease/p2c/instances=10-2         	 1000000	        60.00 ns/op	       0 B/op	       0 allocs/op
    bench_test.go:12: a log line inside the benchmark
BenchmarkProxy/interleaved-2   	    2000	    612345 ns/op	       140.0 added-ratio	       118.0 direct-p50-µs
BenchmarkBroken-2   	 notanumber	  1 ns/op
PASS
ok  	github.com/faasplane/faas/router	3.2s
pkg: github.com/faasplane/faas/loadshed
BenchmarkAdmitDone/callers=1-16   	 5000000	        21.5 ns/op	       0 B/op	       0 allocs/op
`

func TestParseBench(t *testing.T) {
	lines, err := parseBench(strings.NewReader(sampleBench))
	require.NoError(t, err)
	require.Len(t, lines, 5)
	assert.Equal(t, "github.com/faasplane/faas/router", lines[0].Pkg)
	assert.Equal(t, "PickRelease/p2c/instances=10", lines[0].Name)
	assert.Equal(t, int64(1000000), lines[0].N)
	assert.Equal(t, 140.0, lines[3].Metrics["added-ratio"])
	assert.Equal(t, "github.com/faasplane/faas/loadshed", lines[4].Pkg)
	assert.Equal(t, "AdmitDone/callers=1", lines[4].Name, "the -GOMAXPROCS suffix goes, whatever its width")

	stats := aggregate(lines)
	require.Len(t, stats, 3)
	pr := stats[0]
	assert.Equal(t, 3, pr.Runs)
	assert.Equal(t, Spread{Median: 51.2, Min: 49.8, Max: 60, P25: 49.8, P75: 60, N: 3}, pr.Metrics["ns/op"])
	assert.Equal(t, 0.0, pr.Metrics["allocs/op"].Max)
	assert.Contains(t, benchTable(stats), "| PickRelease/p2c/instances=10 | 51.2 (49.8–60) | 0 | 0 |")
}

func TestSpreadAndQuantile(t *testing.T) {
	assert.Equal(t, Spread{Median: 2.5, Min: 1, Max: 4, P25: 1, P75: 3, N: 4}, spreadOf([]float64{4, 1, 3, 2}))
	assert.Equal(t, Spread{}, spreadOf(nil))
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, 5.0, quantile(xs, .5))
	assert.Equal(t, 10.0, quantile(xs, .99))
	assert.Equal(t, 1.0, quantile(xs, 0))
	assert.InDelta(t, 1.25, addedRatio(100, 300, 350), 1e-9)
	assert.Equal(t, 0.0, addedRatio(100, 100, 350), "no added latency in the bare chain: no ratio")
}

func TestReplaceBlocks(t *testing.T) {
	doc := "# Title\n\nprose before\n\n<!-- bench:a:start -->\nold a\n<!-- bench:a:end -->\n\nprose after, kept\n"
	out, err := replaceBlocks(doc, map[string]string{"a": "new a\n", "b": "brand new b"})
	require.NoError(t, err)
	assert.Equal(t, "# Title\n\nprose before\n\n<!-- bench:a:start -->\nnew a\n<!-- bench:a:end -->\n\nprose after, kept\n\n"+
		"<!-- bench:b:start -->\nbrand new b\n<!-- bench:b:end -->\n", out)
	again, err := replaceBlocks(out, map[string]string{"b": "brand new b"})
	require.NoError(t, err)
	assert.Equal(t, out, again, "replacing a block with the same content changes nothing")

	_, err = replaceBlocks("<!-- bench:a:end -->\n<!-- bench:a:start -->\n", map[string]string{"a": "x"})
	assert.Error(t, err, "markers in the wrong order")
	_, err = replaceBlocks("<!-- bench:a:start -->\n", map[string]string{"a": "x"})
	assert.Error(t, err, "a start without an end")
}

func TestLBModelIsDeterministicAndServesEveryRequest(t *testing.T) {
	for _, newPolicy := range lbPolicies {
		a, err := lbRun(newPolicy(), lbServiceMeans, lbLimit, 0.9*840, 5000, 7)
		require.NoError(t, err)
		b, err := lbRun(newPolicy(), lbServiceMeans, lbLimit, 0.9*840, 5000, 7)
		require.NoError(t, err)
		assert.Equal(t, a, b, newPolicy().Name())
		assert.Greater(t, a.p99, a.mean)
		// The mean sojourn is at least the mean service time of a request
		// (about 10.5 ms given the slow instances' share).
		assert.Greater(t, a.mean, 9.0)
	}
}

// TestEveryScenarioTiny runs the whole suite at a tiny size against a copy
// of BENCHMARKS.md, so that it keeps working: real processes, the
// simulator model, go test -bench and the markdown update.
func TestEveryScenarioTiny(t *testing.T) {
	dir := t.TempDir()
	root, err := moduleRoot(context.Background())
	require.NoError(t, err)
	orig, err := os.ReadFile(filepath.Join(root, "BENCHMARKS.md"))
	require.NoError(t, err)
	md := filepath.Join(dir, "BENCHMARKS.md")
	require.NoError(t, os.WriteFile(md, orig, 0o644))

	o := defaultOptions()
	o.quick()
	o.out, o.md, o.root = filepath.Join(dir, "results"), md, root
	require.NoError(t, run(context.Background(), o))

	doc, err := os.ReadFile(md)
	require.NoError(t, err)
	for _, name := range o.scenarios {
		var v map[string]any
		b, err := os.ReadFile(filepath.Join(o.out, name+".json"))
		require.NoError(t, err, name)
		require.NoError(t, json.Unmarshal(b, &v), name)
		block := name
		if name == "hotpath" {
			block = "hotpath-root"
		}
		start, end := markers(block)
		assert.Contains(t, string(doc), start)
		assert.Contains(t, string(doc), end)
	}
	start, _ := markers("summary")
	assert.Contains(t, string(doc), start)
	assert.Contains(t, string(doc), "finishes in under 5 minutes")
	assert.FileExists(t, filepath.Join(o.out, "overload.svg"))
	assert.FileExists(t, filepath.Join(o.out, "lb.svg"))
	assert.Contains(t, string(doc), "](results/overload.svg)", "plots are linked relative to the markdown file")
	// Prose outside the blocks is kept: the first paragraph of the
	// original survives as it was.
	intro, _, _ := strings.Cut(string(orig), "\n\n")
	assert.True(t, strings.HasPrefix(string(doc), intro))

	var hop hopResult
	readJSON(t, filepath.Join(o.out, "hop.json"), &hop)
	require.Len(t, hop.Modes, 2)
	for _, m := range hop.Modes {
		require.Len(t, m.Targets, 3)
		for _, tg := range m.Targets {
			assert.Empty(t, tg.Errors, "%s %s", m.Name, tg.Name)
			assert.Positive(t, tg.Pooled.N, "%s %s", m.Name, tg.Name)
		}
	}

	var cold coldResult
	readJSON(t, filepath.Join(o.out, "coldstart.json"), &cold)
	require.Len(t, cold.Cases, 4)
	for _, c := range cold.Cases {
		assert.Len(t, c.Samples, o.cold.N, c.Name)
		assert.Zero(t, c.Failed, c.Name)
		for _, s := range c.Samples {
			assert.Positive(t, s.Total, c.Name)
			assert.Equal(t, !strings.Contains(c.Name, "not cached"), s.CacheHit, c.Name)
		}
	}

	var ov overloadResult
	readJSON(t, filepath.Join(o.out, "overload.json"), &ov)
	assert.Positive(t, ov.Capacity)
	for _, m := range ov.Modes {
		require.Len(t, m.Steps, len(o.overload.Levels), m.Name)
		assert.Positive(t, m.Steps[0].OK, m.Name)
	}

	var sh shardResult
	readJSON(t, filepath.Join(o.out, "sharding.json"), &sh)
	require.NotEmpty(t, sh.Benches)
	for _, bal := range sh.Balance {
		assert.True(t, bal.AddOnlyToNew, "%d nodes", bal.Nodes)
		assert.True(t, bal.RemoveOnlyItsKeys, "%d nodes", bal.Nodes)
	}

	var hot hotResult
	readJSON(t, filepath.Join(o.out, "hotpath.json"), &hot)
	require.Len(t, hot.Packages, 1)
	assert.Empty(t, hot.Packages[0].Err)
	assert.NotEmpty(t, hot.Packages[0].Stats)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func TestHotMarkdownStatesEachPackagesBenchtime(t *testing.T) {
	r := &hotResult{Params: hotParams{Count: 5, Benchtime: "100ms"}, Packages: []hotPkgResult{
		{hotPackage: hotPackage{Dir: ".", Bench: "^BenchmarkHotPath", Benchtime: "1s"}},
		{hotPackage: hotPackage{Dir: "./router", Bench: "^BenchmarkPick"}},
	}}
	root, others := hotMarkdown(r)
	assert.Contains(t, root, "Repetition: median of -count=5 runs with range, -benchtime=1s.")
	assert.Contains(t, others, "Repetition: median of -count=5 runs with range, -benchtime=100ms.")
	assert.Equal(t, "1s", r.Packages[0].benchtime(r.Params.Benchtime))
	assert.Equal(t, "100ms", r.Packages[1].benchtime(r.Params.Benchtime))
}
