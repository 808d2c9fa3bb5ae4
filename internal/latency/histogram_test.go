package latency

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBucketBoundsAreConsistent(t *testing.T) {
	for i := 0; i < numBuckets-1; i++ {
		lo, hi := lowerBound(i), lowerBound(i+1)
		require.Less(t, lo, hi, "bucket %d", i)
		require.Equal(t, i, bucket(lo), "lower bound of %d", i)
		require.Equal(t, i, bucket(hi-1), "upper edge of %d", i)
	}
	assert.Equal(t, numBuckets-1, bucket(1<<62))
}

func TestQuantilesWithinRelativeError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []time.Duration
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(5*time.Millisecond))
		h.Record(d)
		vals = append(vals, d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		assert.InEpsilon(t, float64(exact), float64(got), 0.07, "q=%v exact=%v got=%v", q, exact, got)
	}
	assert.EqualValues(t, 100_000, h.Count())
	assert.Equal(t, vals[len(vals)-1].Truncate(time.Microsecond), h.Max())
	assert.InEpsilon(t, float64(5*time.Millisecond), float64(h.Mean()), 0.02)
}

func TestSmallValuesAreExact(t *testing.T) {
	var h Histogram
	for i := range 10 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	assert.Equal(t, 4*time.Microsecond, h.Quantile(0.5))
	assert.Equal(t, 9*time.Microsecond, h.Quantile(1))
	assert.Equal(t, time.Duration(0), h.Quantile(0))
}

func TestEmptyAndReset(t *testing.T) {
	var h Histogram
	assert.Zero(t, h.Quantile(0.5))
	assert.Zero(t, h.Mean())
	h.Record(-time.Second)
	h.Record(time.Hour * 100) // beyond the range: last bucket, max kept
	assert.Equal(t, 100*time.Hour, h.Max())
	assert.Equal(t, 100*time.Hour, h.Quantile(1))
	h.Reset()
	assert.Zero(t, h.Count())
	assert.Equal(t, Snapshot{}, h.Snapshot())
}

func TestConcurrentRecord(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10_000 {
				h.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 80_000, h.Count())
	assert.Equal(t, 16_999*time.Microsecond, h.Max())
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xffff) * time.Microsecond)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			h.Record(time.Duration(i&0xffff) * time.Microsecond)
		}
	})
}

func ExampleHistogram() {
	var h Histogram
	for _, ms := range []int{1, 2, 3, 4, 100} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	s := h.Snapshot()
	fmt.Println(s.Count, s.P50, s.Max)
	// Output: 5 3.007ms 100ms
}
