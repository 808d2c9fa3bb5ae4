package sharding

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLnMatchesMathLog(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	check := func(x float64) {
		got, want := ln(x), math.Log(x)
		// fdlibm's log is within one ulp of the true value; allow two ulps
		// against math.Log, which has its own sub-ulp error.
		if ulps := math.Abs(got-want) / ulp(want); ulps > 2 {
			t.Fatalf("ln(%v) = %v, math.Log = %v (%v ulps)", x, got, want, ulps)
		}
	}
	for range 1_000_000 {
		check(unit(r.Uint64()))
	}
	for _, x := range []float64{unit(0), unit(math.MaxUint64), 0.5, math.Sqrt2 / 2, 1e-300, 0.999999999} {
		check(x)
	}
}

func TestLnIsMonotone(t *testing.T) {
	// The weighted order must not contradict the hash order between close
	// neighbours; check adjacent representable units near 1 and elsewhere.
	for _, start := range []uint64{0, 1 << 40, 1 << 62, math.MaxUint64 - 4096<<12} {
		prev := ln(unit(start))
		for i := uint64(1); i < 4096; i++ {
			cur := ln(unit(start + i<<12))
			if cur < prev {
				t.Fatalf("ln not monotone at step %d from %#x", i, start)
			}
			prev = cur
		}
	}
}

func ulp(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

func TestUnitIsInsideOpenInterval(t *testing.T) {
	for _, h := range []uint64{0, 1, 1 << 12, math.MaxUint64, math.MaxUint64 - 1<<12} {
		u := unit(h)
		if u <= 0 || u >= 1 {
			t.Fatalf("unit(%#x) = %v, want in (0,1)", h, u)
		}
		if ln(u) >= 0 {
			t.Fatalf("ln(unit(%#x)) = %v, want < 0", h, ln(u))
		}
	}
}
