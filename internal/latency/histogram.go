// Package latency records durations in a fixed-size, lock-free histogram and
// answers quantile queries (p50, p99) with bounded relative error.
//
// Buckets are log-linear, as in HdrHistogram: each power of two from 16 µs to
// about 76 hours is split into 16 linear sub-buckets, so a quantile is off by
// at most 1/16 (6.25 %) of its value, while recording is one atomic add on a
// preallocated array: no locks and no allocation on the request path. The
// dataplane's per-function statistics and the benchmark programs use it.
package latency

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits    = 4 // 16 sub-buckets per power of two
	subBuckets = 1 << subBits
	unit       = time.Microsecond
	// maxExp powers of two above the first linear range: up to 16 µs × 2^34 ≈ 76 h.
	maxExp     = 34
	numBuckets = (maxExp + 1) * subBuckets
)

// Histogram is a concurrent histogram of durations. The zero value is ready
// to use. It must not be copied after first use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64 // microseconds
	max    atomic.Uint64 // microseconds
}

// bucket returns the index for v microseconds.
func bucket(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits // >= 1
	if exp > maxExp {
		return numBuckets - 1
	}
	sub := (v >> (exp - 1)) & (subBuckets - 1)
	// The first range [0,16) uses index = value; range e covers
	// [16·2^(e-1), 16·2^e) with step 2^(e-1), indices 16e .. 16e+15.
	return exp*subBuckets + int(sub)
}

// lowerBound returns the smallest value (µs) of bucket i.
func lowerBound(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp, sub := i/subBuckets, uint64(i%subBuckets)
	return (subBuckets + sub) << (exp - 1)
}

// Record adds one observation. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0) / unit)
	h.counts[bucket(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Mean returns the mean observation (0 when empty).
func (h *Histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load()/n) * unit
}

// Max returns the largest observation.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) * unit }

// Quantile returns an estimate of the q-quantile (q in [0,1]): the midpoint
// of the bucket holding it, capped by the maximum. It returns 0 when empty.
// Under concurrent Record calls the answer reflects some recent state.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			if i == numBuckets-1 {
				return h.Max() // the overflow bucket has no upper bound
			}
			lo := lowerBound(i)
			hi := lo + 1
			if i+1 < numBuckets {
				hi = lowerBound(i + 1)
			}
			mid := (lo + hi - 1) / 2
			if i < subBuckets {
				mid = lo
			}
			return time.Duration(min(mid, h.max.Load())) * unit
		}
	}
	return h.Max()
}

// Snapshot is a summary of a histogram at one moment.
type Snapshot struct {
	Count               uint64
	Mean, P50, P95, P99 time.Duration
	Max                 time.Duration
}

// Snapshot summarizes the histogram.
func (h *Histogram) Snapshot() Snapshot {
	return Snapshot{
		Count: h.Count(), Mean: h.Mean(),
		P50: h.Quantile(0.50), P95: h.Quantile(0.95), P99: h.Quantile(0.99),
		Max: h.Max(),
	}
}

// Reset clears the histogram. It is not atomic with concurrent Record calls.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.total.Store(0)
	h.sum.Store(0)
	h.max.Store(0)
}
