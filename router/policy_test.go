package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/faasplane/faas/concurrency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// load is an instance's (in-flight, limit) for policy tests.
type load struct{ n, limit int }

func candidates(loads ...load) []Candidate {
	cands := make([]Candidate, len(loads))
	for i, l := range loads {
		s := concurrency.NewSlots(concurrency.Shared, l.limit)
		for range l.n {
			if !s.TryAcquire() {
				panic("load above limit")
			}
		}
		cands[i] = Candidate{Slots: s}
	}
	return cands
}

func TestPoliciesPickTable(t *testing.T) {
	// want lists every index the policy may return; nil means -1.
	tests := []struct {
		name  string
		loads []load
		want  map[string][]int
	}{
		{
			name:  "no candidates",
			loads: nil,
			want:  map[string][]int{},
		},
		{
			name:  "all full",
			loads: []load{{1, 1}, {4, 4}, {10, 10}},
			want:  map[string][]int{},
		},
		{
			name:  "one candidate with room",
			loads: []load{{3, 4}},
			want:  map[string][]int{"p2c": {0}, "least-utilized": {0}, "round-robin": {0}, "random": {0}, "first-available": {0}},
		},
		{
			name:  "only the last has room",
			loads: []load{{2, 2}, {5, 5}, {1, 1}, {9, 10}},
			want:  map[string][]int{"p2c": {3}, "least-utilized": {3}, "round-robin": {3}, "random": {3}, "first-available": {3}},
		},
		{
			name:  "least utilized is unique",
			loads: []load{{5, 10}, {1, 10}, {3, 4}, {9, 10}},
			want: map[string][]int{
				"p2c": {0, 1, 2}, "least-utilized": {1}, "round-robin": {0, 1, 2, 3},
				"random": {0, 1, 2, 3}, "first-available": {0},
			},
		},
		{
			name:  "utilization, not in-flight count, decides",
			loads: []load{{4, 100}, {1, 2}},
			want: map[string][]int{
				"p2c": {0}, "least-utilized": {0}, "round-robin": {0, 1}, "random": {0, 1}, "first-available": {0},
			},
		},
		{
			name:  "first is full",
			loads: []load{{1, 1}, {0, 3}, {2, 3}},
			want: map[string][]int{
				"p2c": {1, 2}, "least-utilized": {1}, "round-robin": {1, 2}, "random": {1, 2}, "first-available": {1},
			},
		},
	}
	for _, tt := range tests {
		for _, p := range benchPolicies {
			t.Run(tt.name+"/"+p.Name(), func(t *testing.T) {
				cands := candidates(tt.loads...)
				pk := p.NewPicker(cands)
				src := rand.NewPCG(1, 2)
				for range 200 {
					got := pk.Pick(src)
					if len(tt.want[p.Name()]) == 0 {
						require.Equal(t, -1, got)
						continue
					}
					require.Contains(t, tt.want[p.Name()], got)
				}
			})
		}
	}
}

// TestPoliciesNeverPickFull is a property test: on random loads, every
// policy returns a candidate with a free slot, or -1 exactly when all are
// full.
func TestPoliciesNeverPickFull(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	for trial := range 500 {
		n := 1 + rnd.IntN(20)
		loads := make([]load, n)
		anyFree := false
		for i := range loads {
			limit := 1 + rnd.IntN(8)
			inFlight := rnd.IntN(limit + 1)
			if rnd.IntN(3) == 0 {
				inFlight = limit
			}
			loads[i] = load{inFlight, limit}
			anyFree = anyFree || inFlight < limit
		}
		cands := candidates(loads...)
		for _, p := range benchPolicies {
			got := p.NewPicker(cands).Pick(rand.NewPCG(uint64(trial), 1))
			if !anyFree {
				require.Equal(t, -1, got, "%s on %v", p.Name(), loads)
				continue
			}
			require.GreaterOrEqual(t, got, 0, "%s on %v", p.Name(), loads)
			require.Less(t, loads[got].n, loads[got].limit, "%s picked a full candidate in %v", p.Name(), loads)
		}
	}
}

// TestP2CPicksTheBetterOfTwoSamples checks P2C's distribution: with
// distinct utilizations, the candidate of rank r (0 = least utilized) among
// n wins when it is sampled with only worse ones, with probability
// 2(n−1−r) / (n(n−1)).
func TestP2CPicksTheBetterOfTwoSamples(t *testing.T) {
	cands := candidates(load{6, 10}, load{1, 10}, load{9, 10}, load{3, 10})
	ranks := []int{2, 0, 3, 1}
	n := len(cands)
	pk := P2C().NewPicker(cands)
	src := rand.NewPCG(11, 13)
	const picks = 60000
	counts := make([]int, n)
	for range picks {
		counts[pk.Pick(src)]++
	}
	for i, r := range ranks {
		want := 2 * float64(n-1-r) / float64(n*(n-1))
		assert.InDelta(t, want, float64(counts[i])/picks, 0.01, "candidate %d (rank %d)", i, r)
	}
	assert.Zero(t, counts[2], "the most utilized candidate never wins a comparison")
}

func TestRandomIsUniformAndRoundRobinCycles(t *testing.T) {
	cands := candidates(load{0, 5}, load{4, 5}, load{2, 5}, load{1, 5}, load{3, 5})
	src := rand.NewPCG(3, 5)
	counts := make([]int, len(cands))
	const picks = 50000
	pk := Random().NewPicker(cands)
	for range picks {
		counts[pk.Pick(src)]++
	}
	for i, c := range counts {
		assert.InDelta(t, 0.2, float64(c)/picks, 0.01, "candidate %d", i)
	}

	rr := RoundRobin().NewPicker(cands)
	var seq []int
	for range 10 {
		seq = append(seq, rr.Pick(nil))
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}, seq)
}

func TestPoliciesAreDeterministicGivenTheSource(t *testing.T) {
	for _, p := range benchPolicies {
		run := func() []int {
			cands := candidates(load{1, 4}, load{0, 4}, load{2, 4}, load{1, 4}, load{3, 4}, load{0, 4})
			pk := p.NewPicker(cands)
			src := rand.NewPCG(42, 43)
			var out []int
			for range 50 {
				out = append(out, pk.Pick(src))
			}
			return out
		}
		assert.Equal(t, run(), run(), p.Name())
	}
}

func TestPolicyByName(t *testing.T) {
	for _, name := range []string{"p2c", "least-utilized", "round-robin", "random", "first-available"} {
		p, err := PolicyByName(name)
		require.NoError(t, err)
		assert.Equal(t, name, p.Name())
	}
	p, err := PolicyByName("")
	require.NoError(t, err)
	assert.Equal(t, "p2c", p.Name())
	_, err = PolicyByName("least-loaded")
	assert.True(t, errors.Is(err, ErrInvalidConfig), "%v", err)
}

func TestRuntimeSourceVaries(t *testing.T) {
	var src runtimeSource
	seen := map[uint64]bool{}
	for range 100 {
		seen[src.Uint64()] = true
	}
	assert.Greater(t, len(seen), 90, "a 64-bit random source repeats rarely")
}

func TestBelowStaysInRange(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 100, 1 << 20} {
		for _, x := range []uint32{0, 1, 1 << 31, ^uint32(0)} {
			got := below(x, n)
			require.True(t, got >= 0 && got < n, fmt.Sprintf("below(%d, %d) = %d", x, n, got))
		}
	}
}
