package agent

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketBoundaries(t *testing.T) {
	// Every value lands in a bucket whose upper bound is ≥ it and within
	// 1/16 of it; buckets are monotonic.
	prev := -1
	for _, us := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 4095, 4096, 1 << 20, 1<<30 + 12345} {
		b := bucketOf(us)
		require.GreaterOrEqual(t, b, prev, "monotonic at %d", us)
		prev = b
		up := bucketUpper(b)
		require.GreaterOrEqual(t, up, us, "upper bound of %d", us)
		require.LessOrEqual(t, float64(up-us), float64(us)/16+1, "precision at %d", us)
		if b > 0 {
			require.Less(t, bucketUpper(b-1), us, "previous bucket ends below %d", us)
		}
	}
}

// TestHistogramQuantiles compares the summary with exact quantiles of
// random samples: each within the 6.25% bucket precision.
func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var samples []float64
	for range 10000 {
		d := time.Duration(r.ExpFloat64()*2000) * time.Microsecond
		h.record(d)
		samples = append(samples, float64(d.Microseconds())/1000)
	}
	slices.Sort(samples)
	s := h.summary()
	require.Equal(t, int64(10000), s.Count)
	exact := func(q float64) float64 { return samples[int(q*float64(len(samples)))-1] }
	for _, c := range []struct{ got, q float64 }{{s.P50, .5}, {s.P90, .9}, {s.P99, .99}} {
		want := exact(c.q)
		require.InDelta(t, want, c.got, want/16+0.002, "q=%v", c.q)
	}
	require.Equal(t, samples[len(samples)-1], s.Max)
	require.InDelta(t, 2.0, s.Mean, 0.2)
}

func TestHistogramEmptyAndConcurrent(t *testing.T) {
	var h histogram
	require.Zero(t, h.summary())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	s := h.summary()
	require.Equal(t, int64(4000), s.Count)
	require.Equal(t, 0.999, s.Max)
}
