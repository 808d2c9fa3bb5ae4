package sharding

import "math"

// ln returns the natural logarithm of x for x in (0, 1).
//
// The mapping of keys to nodes must be bit-identical on every platform, and
// math.Log is not: amd64 and s390x use assembly implementations whose last
// bit may differ from the portable one. This is the classic fdlibm algorithm
// (reduce to f in [sqrt(2)/2-1, sqrt(2)-1), then a minimax polynomial in
// s = f/(2+f)), error below one ulp, written with explicit float64
// conversions around every product so that no compiler fuses a multiply and
// an add into an FMA, which would change rounding.
func ln(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 // 0x3fe62e42fee00000
		ln2Lo = 1.90821492927058770002e-10 // 0x3dea39ef35793c76
		l1    = 6.666666666666735130e-01   // 0x3fe5555555555593
		l2    = 3.999999999940941908e-01   // 0x3fd999999997fa04
		l3    = 2.857142874366239149e-01   // 0x3fd2492494229359
		l4    = 2.222219843214978396e-01   // 0x3fcc71c51d8e78af
		l5    = 1.818357216161805012e-01   // 0x3fc7466496cb03de
		l6    = 1.531383769920937332e-01   // 0x3fc39a09d078c69f
		l7    = 1.479819860511658591e-01   // 0x3fc2f112df3e5244
	)
	f1, ki := math.Frexp(x) // exact: x = f1 * 2^ki, f1 in [0.5, 1)
	if f1 < math.Sqrt2/2 {
		f1 *= 2 // exact
		ki--
	}
	f := f1 - 1 // exact (Sterbenz)
	k := float64(ki)

	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	r := t1 + t2
	hfsq := float64(0.5 * float64(f*f))
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}
