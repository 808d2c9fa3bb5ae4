package agent

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// histogram is a lock-free log-linear histogram of durations: values are
// bucketed by their power of two (in microseconds) and 16 linear
// sub-buckets within it, so any quantile is off by at most 1/16 (6.25%) of
// its value. Recording is three atomic adds and a compare-and-swap loop for
// the maximum, with no allocation.
type histogram struct {
	counts [histMajors * histSub]atomic.Uint64
	count  atomic.Int64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	histMajors  = 40 // up to 2^40 µs, about 12 days
)

func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	major := bits.Len64(us) - histSubBits // ≥ 1
	sub := (us >> (major - 1)) & (histSub - 1)
	idx := major*histSub + int(sub)
	return min(idx, len(histogram{}.counts)-1)
}

// bucketUpper returns the largest value (µs) that falls into bucket idx.
func bucketUpper(idx int) uint64 {
	if idx < histSub {
		return uint64(idx)
	}
	major, sub := idx/histSub, uint64(idx%histSub)
	return ((histSub+sub+1)<<(major-1) - 1)
}

func (h *histogram) record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(us)].Add(1)
	h.count.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// summary returns the histogram's count, mean and quantiles in
// milliseconds. Concurrent records may be partly included.
func (h *histogram) summary() lifecycle.LatencySummary {
	var snap [len(histogram{}.counts)]uint64
	var total uint64
	for i := range h.counts {
		snap[i] = h.counts[i].Load()
		total += snap[i]
	}
	s := lifecycle.LatencySummary{Count: int64(total)}
	if total == 0 {
		return s
	}
	s.Mean = float64(h.sumUS.Load()) / float64(max(h.count.Load(), 1)) / 1000
	maxMS := float64(h.maxUS.Load()) / 1000
	s.Max = maxMS
	quantile := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, c := range snap {
			if seen += c; seen >= rank {
				return math.Min(float64(bucketUpper(i))/1000, maxMS)
			}
		}
		return maxMS
	}
	s.P50, s.P90, s.P99 = quantile(0.50), quantile(0.90), quantile(0.99)
	return s
}
