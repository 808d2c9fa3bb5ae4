package faastest

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"time"
)

// histSubBits sets the histogram's precision: 2^histSubBits buckets per
// power of two, so a bucket is at most 1/64 of its values wide and a
// percentile read at the bucket's middle is within 0.8 % of the truth.
const histSubBits = 6

// hist is a log-linear histogram of non-negative durations (HdrHistogram's
// layout): values below 2^histSubBits nanoseconds have a bucket each, and
// every further power of two is split into 2^histSubBits equal buckets.
// It starts sparse, a sorted list of the buckets in use, which is what a
// function invoked a few dozen times a day needs, and turns dense (an
// array from the smallest to the largest bucket in use, a few hundred
// buckets for latencies spanning two orders of magnitude) past histSparse
// buckets in use: memory follows the data, not the number of values, and
// a replay of tens of thousands of functions stays small. Count, sum and
// maximum are exact; a bucket's count saturates at 2^32 − 1 (a function
// would need billions of invocations in one bucket).
type hist struct {
	counts []uint32   // dense, from bucket lo; nil while sparse
	lo     int        // the bucket of counts[0]
	sparse []histCell // sorted by bucket
	n      int64
	sum    int64
	max    int64
}

// histCell is one bucket in use of a sparse histogram.
type histCell struct {
	i uint32
	c uint32
}

// histSparse is the most buckets a sparse histogram holds.
const histSparse = 48

func histIndex(v int64) int {
	const sub = 1 << histSubBits
	if v < sub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	return (shift+1)<<histSubBits + int(v>>shift) - sub
}

// histBounds returns the smallest value of bucket i and the bucket's width.
func histBounds(i int) (lo, width int64) {
	const sub = 1 << histSubBits
	if i < sub {
		return int64(i), 1
	}
	shift := i>>histSubBits - 1
	return int64(i&(sub-1)+sub) << shift, 1 << shift
}

func (h *hist) add(d time.Duration) {
	v := max(int64(d), 0)
	h.addAt(histIndex(v), 1)
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

// addAt adds c to bucket i.
func (h *hist) addAt(i int, c uint64) {
	if h.counts == nil {
		k, found := slices.BinarySearchFunc(h.sparse, uint32(i), func(x histCell, i uint32) int { return cmp.Compare(x.i, i) })
		switch {
		case found && uint64(h.sparse[k].c)+c <= math.MaxUint32:
			h.sparse[k].c += uint32(c)
			return
		case !found && len(h.sparse) < histSparse && c <= math.MaxUint32:
			h.sparse = slices.Insert(h.sparse, k, histCell{uint32(i), uint32(c)})
			return
		}
		h.densify()
	}
	switch {
	case i < h.lo:
		// Grow downwards, with room for more.
		lo := max(0, min(i, h.lo-len(h.counts)/2))
		grown := make([]uint32, h.lo-lo+len(h.counts))
		copy(grown[h.lo-lo:], h.counts)
		h.counts, h.lo = grown, lo
	case i >= h.lo+len(h.counts):
		grown := make([]uint32, max(i-h.lo+1, 2*len(h.counts)))
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i-h.lo] = uint32(min(uint64(h.counts[i-h.lo])+c, math.MaxUint32))
}

// densify turns a sparse histogram dense.
func (h *hist) densify() {
	lo, top := 0, 0
	if n := len(h.sparse); n > 0 {
		lo, top = int(h.sparse[0].i), int(h.sparse[n-1].i)+1
	}
	h.counts, h.lo = make([]uint32, max(top-lo, 64)), lo
	for _, x := range h.sparse {
		h.counts[int(x.i)-lo] = x.c
	}
	h.sparse = nil
}

// each calls f for every bucket in use, in order.
func (h *hist) each(f func(i int, c uint64) bool) {
	if h.counts == nil {
		for _, x := range h.sparse {
			if !f(int(x.i), uint64(x.c)) {
				return
			}
		}
		return
	}
	for i, c := range h.counts {
		if c > 0 && !f(h.lo+i, uint64(c)) {
			return
		}
	}
}

func (h *hist) merge(o *hist) {
	o.each(func(i int, c uint64) bool {
		h.addAt(i, c)
		return true
	})
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// quantile returns the q-quantile (0 < q <= 1): the middle of the bucket
// holding the value of rank ceil(q·n), never above the exact maximum.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = min(max(rank, 1), h.n)
	var seen int64
	at := 0
	h.each(func(i int, c uint64) bool {
		seen += int64(c)
		at = i
		return seen < rank
	})
	if seen >= rank {
		lo, w := histBounds(at)
		return time.Duration(min(lo+(w-1)/2, h.max))
	}
	return time.Duration(h.max)
}
