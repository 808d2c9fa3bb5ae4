package faastest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	r := newRand(5)
	var h, a, b hist
	var exact []time.Duration
	d := LogNormal(50*time.Millisecond, 1.5)
	for i := range 100_000 {
		v := d.Sample(r)
		exact = append(exact, v)
		h.add(v)
		if i%2 == 0 {
			a.add(v)
		} else {
			b.add(v)
		}
	}
	slices.Sort(exact)
	var sum time.Duration
	for _, v := range exact {
		sum += v
	}
	for _, q := range []float64{0.001, 0.25, 0.5, 0.95, 0.99, 0.999} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.quantile(q)
		assert.InEpsilon(t, float64(want), float64(got), 0.01, "q=%v", q)
	}
	assert.Equal(t, exact[len(exact)-1], h.quantile(1))
	assert.Equal(t, sum/time.Duration(len(exact)), h.mean(), "the mean is exact")
	assert.Equal(t, exact[len(exact)-1], time.Duration(h.max))
	a.merge(&b)
	cells := func(h *hist) (out [][2]uint64) {
		h.each(func(i int, c uint64) bool {
			out = append(out, [2]uint64{uint64(i), c})
			return true
		})
		return out
	}
	assert.Equal(t, cells(&h), cells(&a), "merging the halves gives the whole")
	assert.Equal(t, []int64{h.n, h.sum, h.max}, []int64{a.n, a.sum, a.max})

	var small hist
	for v := range 64 {
		small.add(time.Duration(v))
	}
	assert.Equal(t, 31*time.Nanosecond, small.quantile(0.5), "values below 64 ns are exact")
	var empty hist
	assert.Zero(t, empty.quantile(0.5))
	assert.Zero(t, empty.mean())

	// Sparse, dense, grown downwards: the same quantiles as a reference
	// filled in order.
	for seed := range uint64(20) {
		r := newRand(seed)
		var x, ref hist
		ref.densify()
		for range 1 + r.IntN(3000) {
			v := time.Duration(math.Exp(r.Float64() * 40))
			x.add(v)
			ref.add(v)
		}
		for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 1} {
			require.Equal(t, ref.quantile(q), x.quantile(q), "seed %d q %v", seed, q)
		}
		require.Equal(t, cells(&ref), cells(&x))
	}
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	prevEnd := int64(0)
	for i := range 40 << histSubBits {
		lo, w := histBounds(i)
		require.Equal(t, prevEnd, lo, "bucket %d starts where %d ended", i, i-1)
		require.Equal(t, i, histIndex(lo))
		require.Equal(t, i, histIndex(lo+w-1))
		prevEnd = lo + w
	}
	assert.Less(t, histIndex(math.MaxInt64), 64<<histSubBits)
}

func smallReport(t *testing.T, name string, keepAlive time.Duration) *Report {
	t.Helper()
	w := Merge(Poisson("busy", 20, 5*time.Minute, 1), Periodic("timer", 2*time.Minute, 0, 5*time.Minute))
	r, err := Run(Config{Name: name, Seed: 3, Default: FunctionSpec{KeepAlive: keepAlive}}, w)
	require.NoError(t, err)
	return r
}

func wellFormedSVG(t *testing.T, b []byte) {
	t.Helper()
	require.True(t, bytes.HasPrefix(b, []byte("<svg")), "starts with <svg")
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			return
		}
		require.NoError(t, err)
	}
}

func TestReportOutputs(t *testing.T) {
	r := smallReport(t, "ten minutes", 0)
	busy, ok := r.Function("busy")
	require.True(t, ok)
	_, ok = r.Function("nope")
	assert.False(t, ok)
	assert.Greater(t, busy.Invocations, int64(5000))
	assert.Less(t, busy.Latency.P50, busy.Latency.P99)

	var text bytes.Buffer
	require.NoError(t, r.WriteText(&text, 1))
	out := text.String()
	t.Logf("\n%s", out)
	assert.Contains(t, out, `run "ten minutes" (seed 3, policy p2c): 2 functions`)
	assert.Contains(t, out, "total")
	assert.Contains(t, out, "busy")
	assert.NotContains(t, out, "timer", "only the busiest function")
	assert.Contains(t, out, "pool default:")

	var js bytes.Buffer
	require.NoError(t, r.WriteJSON(&js))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	assert.Equal(t, *r, back, "the JSON holds the whole report")
	assert.Contains(t, js.String(), `"cold_start_ratio"`)

	var svg bytes.Buffer
	require.NoError(t, r.WriteSVG(&svg))
	wellFormedSVG(t, svg.Bytes())
	assert.Contains(t, svg.String(), "in flight")
}

func TestComparison(t *testing.T) {
	workload := func() Workload {
		return Merge(Poisson("busy", 20, 5*time.Minute, 1), Periodic("timer", 2*time.Minute, 0, 5*time.Minute))
	}
	c, err := Compare(Config{Name: "keep", Seed: 3}, Config{Name: "none", Seed: 3, Default: FunctionSpec{KeepAlive: -1}}, workload)
	require.NoError(t, err)
	assert.Equal(t, c.A.Total.Invocations, c.B.Total.Invocations)
	assert.Greater(t, c.B.Total.ColdStarts, c.A.Total.ColdStarts, "no keep-alive, more cold starts")

	var text bytes.Buffer
	require.NoError(t, c.WriteText(&text))
	out := text.String()
	t.Logf("\n%s", out)
	for _, row := range []string{"keep", "none", "invocations", "cold-start ratio", "latency p99", "instance-seconds", "idle pod-seconds"} {
		assert.Contains(t, out, row)
	}
	line := func(prefix string) string {
		for l := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return l
			}
		}
		return ""
	}
	assert.True(t, strings.HasSuffix(strings.TrimSpace(line("invocations")), "="), "same invocations: %q", line("invocations"))
	assert.Contains(t, line("cold starts"), "+", "more cold starts without keep-alive")

	var svg bytes.Buffer
	require.NoError(t, c.WriteSVG(&svg))
	wellFormedSVG(t, svg.Bytes())
	assert.Contains(t, svg.String(), "none: alive")

	_, err = Compare(Config{}, Config{ScaleInterval: -1}, workload)
	assert.ErrorIs(t, err, ErrConfig)
}

func TestChangeAndDurationFormats(t *testing.T) {
	assert.Equal(t, "=", change(3, 3))
	assert.Equal(t, "new", change(0, 3))
	assert.Equal(t, "-50.0%", change(4, 2))
	assert.Equal(t, "+200.0%", change(-1, 1))
	assert.Equal(t, "0", dur(0))
	assert.Equal(t, "12ns", dur(12))
	assert.Equal(t, "1.5µs", dur(1500))
	assert.Equal(t, "69.7ms", dur(69_700_000))
	assert.Equal(t, "2.5s", dur(2500*time.Millisecond))
}

func TestCoarsenKeepsPeaksAndColdStarts(t *testing.T) {
	pts := []TimelinePoint{
		{T: 1, Instances: 1, ColdStarts: 1},
		{T: 2, Instances: 5, InFlight: 3},
		{T: 3, Instances: 2, ColdStarts: 2},
		{T: 4, Queued: 7},
		{T: 5, IdlePods: 4, ColdStarts: 1},
	}
	assert.Equal(t, pts, coarsen(pts, 1))
	assert.Equal(t, []TimelinePoint{
		{T: 2, Instances: 5, InFlight: 3, ColdStarts: 1},
		{T: 4, Instances: 2, Queued: 7, ColdStarts: 2},
		{T: 5, IdlePods: 4, ColdStarts: 1},
	}, coarsen(pts, 2))
	assert.Equal(t, []TimelinePoint{{T: 5, Instances: 5, InFlight: 3, Queued: 7, IdlePods: 4, ColdStarts: 4}}, coarsen(pts, 9))

	// A chart of an hour sampled every second stays small.
	r, err := Run(Config{Seed: 1, Until: time.Hour}, Poisson("f", 5, time.Hour, 1))
	require.NoError(t, err)
	require.Len(t, r.Timeline, 3601)
	var svg bytes.Buffer
	require.NoError(t, r.WriteSVG(&svg))
	wellFormedSVG(t, svg.Bytes())
	assert.Less(t, svg.Len(), 150_000)
	assert.Contains(t, svg.String(), "per 7s", "cold starts counted over the coarser step")
}
