package concurrency

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPlanRound(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	settled := now.Add(-2 * time.Minute) // Ready long enough
	fresh := now.Add(-time.Second)       // Ready too recently to drain
	cur := func(inFlight int, readyAt, used time.Time) Replica {
		return Replica{Current: true, Ready: true, InFlight: inFlight, ReadyAt: readyAt, LastUsed: used}
	}
	old := func(inFlight int) Replica {
		return Replica{Ready: true, InFlight: inFlight, ReadyAt: settled, LastUsed: settled}
	}
	loading := Replica{Current: true}
	steady := func(inFlight int) Replica {
		r := cur(inFlight, settled, t0)
		r.Steady = true
		return r
	}
	tests := []struct {
		name              string
		desired, starting int
		replicas          []Replica
		want              Plan
	}{
		{"steady", 2, 0, []Replica{cur(1, settled, now), cur(0, settled, now)}, Plan{}},
		{"scale up", 4, 1, []Replica{cur(1, settled, now)}, Plan{Start: 3}},
		{"cold starts count", 3, 2, []Replica{cur(1, settled, now)}, Plan{Start: 2}},
		{"scale down idlest first", 1, 0, []Replica{cur(3, settled, now), cur(0, settled, now), cur(1, settled, now)},
			Plan{Drain: []int{1, 2}}},
		{"ties: unused the longest first", 1, 0, []Replica{cur(0, settled, now), cur(0, settled, t0)},
			Plan{Drain: []int{1}}},
		{"not before settle", 0, 0, []Replica{cur(0, fresh, fresh), cur(0, settled, settled)}, Plan{Drain: []int{1}}},
		{"not a loading one", 0, 0, []Replica{loading}, Plan{}},
		{"a surplus of cold starts drains fewer", 2, 2, []Replica{cur(0, settled, now), cur(0, settled, now)},
			Plan{Start: 2}},
		{"surplus beyond the cold starts", 1, 1, []Replica{cur(0, settled, now), cur(2, settled, now)},
			Plan{Drain: []int{0}, Start: 1}},
		{"roll: old drain as new are ready", 2, 0, []Replica{old(0), old(1), cur(0, fresh, fresh)},
			Plan{Drain: []int{0}, Start: 1}},
		{"roll: all new ready", 2, 0, []Replica{old(0), old(1), cur(0, fresh, fresh), cur(0, fresh, fresh)},
			Plan{Drain: []int{0, 1}}},
		{"roll: nothing new yet", 2, 2, []Replica{old(0), old(1)}, Plan{Start: 2}},
		{"scale to zero", 0, 0, []Replica{cur(0, settled, settled)}, Plan{Drain: []int{0}}},
		{"steady ones drain last, even idler", 2, 0, []Replica{steady(0), cur(3, settled, now), steady(0), cur(1, settled, now)},
			Plan{Drain: []int{1, 3}}},
		{"steady ones drain when nothing else is left", 1, 0, []Replica{steady(2), steady(0), cur(1, settled, now)},
			Plan{Drain: []int{1, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanRound(now, tt.desired, tt.starting, tt.replicas, time.Minute)
			assert.Equal(t, tt.want.Start, got.Start)
			assert.ElementsMatch(t, tt.want.Drain, got.Drain)
		})
	}
}

// TestPlanRoundInvariants: whatever the replicas, a round never drains a
// replica twice, never drains one that is not Ready or settled (current
// ones), never leaves fewer than desired counting cold starts when it
// drains current ones, and asks for at least the cold starts in flight.
func TestPlanRoundInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	now := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	const settle = time.Minute
	for range 5000 {
		n := rng.IntN(12)
		reps := make([]Replica, n)
		for i := range reps {
			ready := rng.IntN(5) > 0
			at := now.Add(-time.Duration(rng.IntN(180)) * time.Second)
			reps[i] = Replica{Current: rng.IntN(3) > 0, Ready: ready, InFlight: rng.IntN(4), ReadyAt: at, LastUsed: at}
		}
		desired, starting := rng.IntN(10), rng.IntN(4)
		p := PlanRound(now, desired, starting, reps, settle)
		seen := map[int]bool{}
		drainedCurrent, current := 0, 0
		for _, r := range reps {
			if r.Current {
				current++
			}
		}
		for _, i := range p.Drain {
			assert.False(t, seen[i], "drained twice")
			seen[i] = true
			if reps[i].Current {
				drainedCurrent++
				assert.True(t, reps[i].Ready && now.Sub(reps[i].ReadyAt) >= settle, "a current replica drained before it settled")
			}
		}
		if drainedCurrent > 0 {
			assert.GreaterOrEqual(t, current-drainedCurrent+starting, desired, "scale down below the desired count")
		}
		assert.GreaterOrEqual(t, p.Start, starting)
		assert.LessOrEqual(t, p.Start, max(starting, desired))
	}
}

func BenchmarkPlanRound(b *testing.B) {
	now := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	reps := make([]Replica, 16)
	for i := range reps {
		reps[i] = Replica{Current: true, Ready: true, InFlight: i % 3, ReadyAt: now.Add(-time.Hour)}
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = PlanRound(now, 16, 0, reps, time.Minute) // steady: the common round
	}
}
