package faastest

import (
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: 2^histSubBits buckets per
// power of two, so a bucket is at most 1/64 of its values wide and a
// percentile read at the bucket's middle is within 0.8 % of the truth.
const histSubBits = 6

// hist is a log-linear histogram of non-negative durations (HdrHistogram's
// layout): values below 2^histSubBits nanoseconds have a bucket each, and
// every further power of two is split into 2^histSubBits equal buckets. It
// grows to the largest value seen, so memory follows the range of the data
// (about 1,800 buckets up to a minute), not the number of values. Count,
// sum and maximum are exact.
type hist struct {
	counts []uint64
	n      int64
	sum    int64
	max    int64
}

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
	i := histIndex(v)
	if i >= len(h.counts) {
		grown := make([]uint64, max(i+1, 2*len(h.counts)))
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
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
	for i, c := range h.counts {
		seen += int64(c)
		if seen >= rank {
			lo, w := histBounds(i)
			return time.Duration(min(lo+(w-1)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
