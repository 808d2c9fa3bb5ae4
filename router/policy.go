package router

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
)

// Candidate is one instance a [Picker] may choose: the instance and the
// slots its choice is judged by. For an instance on half-open probation the
// router passes a one-slot gate instead of the instance's own slots, so that
// policies see it as full while its single probe request is in flight.
type Candidate struct {
	Instance *lifecycle.Instance
	Slots    *concurrency.Slots
}

// Policy builds pickers. The router calls NewPicker, under a function's
// write lock, each time the function's candidates change, and then calls the
// picker's Pick, concurrently and without locks, for every request until the
// next change. This split (grpc-go's balancer.Picker design) lets a policy
// precompute from the candidates and keep per-function state such as a
// round-robin cursor without any shared lock.
type Policy interface {
	// Name returns the policy's name as accepted by [PolicyByName].
	Name() string
	// NewPicker returns a picker over cands. It may allocate; it must not
	// modify cands, which the router keeps and reuses.
	NewPicker(cands []Candidate) Picker
}

// Picker chooses among a fixed set of candidates.
type Picker interface {
	// Pick returns the index of a candidate that is not full (whose
	// Slots.Free() > 0 when it looked), or -1 when all looked full. It
	// must not block or allocate, and must be safe for concurrent use
	// when src is. All randomness comes from src, so that a picker given
	// a seeded source and the same slot counts picks the same candidate.
	// The router acquires the slot itself and calls Pick again (a
	// bounded number of times) when a concurrent request took it first.
	Pick(src rand.Source) int
}

// PolicyByName returns the built-in policy with the given name: "p2c" (the
// default), "least-utilized", "round-robin", "random" or
// "first-available". It returns an error wrapping [ErrInvalidConfig] for any
// other name.
func PolicyByName(name string) (Policy, error) {
	switch name {
	case "p2c", "":
		return P2C(), nil
	case "least-utilized":
		return LeastUtilized(), nil
	case "round-robin":
		return RoundRobin(), nil
	case "random":
		return Random(), nil
	case "first-available":
		return FirstAvailable(), nil
	}
	return nil, fmt.Errorf("%w: unknown policy %q", ErrInvalidConfig, name)
}

// runtimeSource is a [rand.Source] backed by math/rand/v2's top-level
// generator: per-thread state in the runtime, safe for concurrent use
// without a shared lock, allocation-free, and not reproducible. It is the
// router's default source; simulations pass a seeded source instead.
type runtimeSource struct{}

// Uint64 returns a pseudo-random 64-bit value.
func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

// below maps a random 32-bit value to [0, n) by multiply-and-shift
// (Lemire's method without the rejection step: the bias is below n/2³²,
// irrelevant for picking among at most a few thousand instances).
func below(x uint32, n int) int { return int(uint64(x) * uint64(n) >> 32) }

// full reports whether s has no free slot (one atomic load).
func full(s *concurrency.Slots) bool { return s.Free() == 0 }

// counts returns s's in-flight count and limit. Policies compare
// utilizations n₁/l₁ < n₂/l₂ as n₁·l₂ < n₂·l₁: integer products (exact, as
// both counts are below 2³¹) cost less than divisions and let the compiler
// choose with a conditional move instead of an unpredictable branch, which
// made P2C four times faster.
func counts(s *concurrency.Slots) (inFlight, limit uint64) {
	n, l := s.Counts()
	return uint64(n), uint64(l)
}

// scanFrom returns the first candidate at or after start (wrapping) that is
// not full, or -1.
func scanFrom(cands []Candidate, start int) int {
	n := len(cands)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if !full(cands[i].Slots) {
			return i
		}
	}
	return -1
}

// P2C returns the power-of-two-choices policy, the router's default: sample
// two distinct candidates at random and take the one with the lower
// utilization (in-flight / limit). It costs O(1) per pick, spreads load
// almost as evenly as a full least-utilized scan, and, unlike a scan, does
// not send every concurrent request to the same least-loaded instance. When
// both samples are full it scans for any candidate that is not.
func P2C() Policy { return p2cPolicy{} }

type p2cPolicy struct{}

func (p2cPolicy) Name() string                       { return "p2c" }
func (p2cPolicy) NewPicker(cands []Candidate) Picker { return &p2cPicker{cands: cands} }

type p2cPicker struct{ cands []Candidate }

func (p *p2cPicker) Pick(src rand.Source) int {
	cands := p.cands
	n := len(cands)
	switch n {
	case 0:
		return -1
	case 1:
		if full(cands[0].Slots) {
			return -1
		}
		return 0
	}
	x := src.Uint64()
	i := below(uint32(x), n)
	j := below(uint32(x>>32), n-1)
	j += int(uint64(int64(i)-int64(j)-1) >> 63) // j++ when j ≥ i, without a branch
	ni, li := counts(cands[i].Slots)
	nj, lj := counts(cands[j].Slots)
	// Take j when it is less utilized, with masks rather than a branch
	// that would be mispredicted half the time.
	var better int
	if nj*li < ni*lj {
		better = 1
	}
	mask := -better
	i ^= (i ^ j) & mask
	ni ^= (ni ^ nj) & uint64(mask)
	li ^= (li ^ lj) & uint64(mask)
	if ni < li {
		return i
	}
	return scanFrom(cands, i)
}

// LeastUtilized returns the policy that scans every candidate and takes the
// one with the lowest utilization. Ties are broken by starting the scan at a
// random candidate, so that concurrent pickers do not all choose the first.
// It costs O(n) per pick.
func LeastUtilized() Policy { return leastPolicy{} }

type leastPolicy struct{}

func (leastPolicy) Name() string                       { return "least-utilized" }
func (leastPolicy) NewPicker(cands []Candidate) Picker { return &leastPicker{cands: cands} }

type leastPicker struct{ cands []Candidate }

func (p *leastPicker) Pick(src rand.Source) int {
	cands := p.cands
	n := len(cands)
	if n == 0 {
		return -1
	}
	start := below(uint32(src.Uint64()), n)
	// The best so far starts as a full instance (utilization 1/1), so
	// that only instances with a free slot can beat it.
	best, bn, bl := -1, uint64(1), uint64(1)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if ni, li := counts(cands[i].Slots); ni*bl < bn*li {
			best, bn, bl = i, ni, li
			if ni == 0 {
				break
			}
		}
	}
	return best
}

// RoundRobin returns the policy that takes the candidates in turn, skipping
// full ones. The cursor is per function and restarts when the function's
// candidates change. Every pick of a function increments one shared
// counter, so under heavy parallel load it scales worse than [P2C].
func RoundRobin() Policy { return rrPolicy{} }

type rrPolicy struct{}

func (rrPolicy) Name() string                       { return "round-robin" }
func (rrPolicy) NewPicker(cands []Candidate) Picker { return &rrPicker{cands: cands} }

type rrPicker struct {
	cands []Candidate
	next  atomic.Uint64
}

func (p *rrPicker) Pick(rand.Source) int {
	n := len(p.cands)
	if n == 0 {
		return -1
	}
	return scanFrom(p.cands, int((p.next.Add(1)-1)%uint64(n)))
}

// Random returns the policy that takes a candidate uniformly at random,
// moving on to the next one when it is full.
func Random() Policy { return randomPolicy{} }

type randomPolicy struct{}

func (randomPolicy) Name() string                       { return "random" }
func (randomPolicy) NewPicker(cands []Candidate) Picker { return &randomPicker{cands: cands} }

type randomPicker struct{ cands []Candidate }

func (p *randomPicker) Pick(src rand.Source) int {
	n := len(p.cands)
	if n == 0 {
		return -1
	}
	return scanFrom(p.cands, below(uint32(src.Uint64()), n))
}

// FirstAvailable returns the policy that takes the first candidate, in the
// order instances were added, that is not full. It packs requests onto the
// oldest instances so that the newest become idle and can be scaled to zero
// sooner, at the cost of running the busy ones at their limit.
func FirstAvailable() Policy { return firstPolicy{} }

type firstPolicy struct{}

func (firstPolicy) Name() string                       { return "first-available" }
func (firstPolicy) NewPicker(cands []Candidate) Picker { return &firstPicker{cands: cands} }

type firstPicker struct{ cands []Candidate }

func (p *firstPicker) Pick(rand.Source) int { return scanFrom(p.cands, 0) }
