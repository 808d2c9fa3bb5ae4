package concurrency

import (
	"cmp"
	"slices"
	"time"
)

// Replica is one live instance of a function as a scaling round sees it.
type Replica struct {
	// Current is true when the replica runs the function's current
	// deployment; false for one of an older generation that a rolling
	// update replaces.
	Current bool
	// Ready is true once the replica serves requests.
	Ready bool
	// InFlight is the number of requests running on it.
	InFlight int
	// ReadyAt is when it became Ready.
	ReadyAt time.Time
	// LastUsed is when its last request ended (or ReadyAt).
	LastUsed time.Time
	// Steady marks a steady instance (a pod created for the function):
	// excess replicas drain the others first, so that bursts are absorbed
	// by warm-pool instances and steady traffic stays on steady ones.
	Steady bool
}

// Plan is what a scaling round does once the policy has said how many
// instances a function should have.
type Plan struct {
	// Drain lists the indices, into the replicas given to [PlanRound], of
	// the replicas to take out of the routes and drain.
	Drain []int
	// Start is how many cold starts should be in flight after the round
	// (at least the ones already are).
	Start int
}

// PlanRound turns the desired number of instances into actions, the same
// way in the dataplane and in the simulator: replicas of an older
// generation drain as current ones are Ready to replace them (a surge, not
// a cliff), excess current replicas drain idlest first (steady ones last,
// then fewest requests in flight, then unused the longest) but only once
// they have been Ready for
// settle, so that instances started for a burst are not drained and started
// again at every burst, and the missing ones are cold-started. starting is
// the number of cold starts in flight, which count as instances: they
// cannot be called back, so a surplus of them is absorbed by draining
// fewer. PlanRound is a pure function of its arguments.
func PlanRound(now time.Time, desired, starting int, replicas []Replica, settle time.Duration) Plan {
	// The common round changes nothing: count before building anything.
	nOld := 0
	for _, r := range replicas {
		if !r.Current {
			nOld++
		}
	}
	if have := len(replicas) - nOld + starting; nOld == 0 && have-desired <= starting {
		return Plan{Start: starting + max(desired-have, 0)}
	}
	var current, old []int
	ready := 0
	for i, r := range replicas {
		if !r.Current {
			old = append(old, i)
			continue
		}
		current = append(current, i)
		if r.Ready {
			ready++
		}
	}
	idlest := func(a, b int) int {
		ra, rb := replicas[a], replicas[b]
		return cmp.Or(cmp.Compare(steadyRank(ra), steadyRank(rb)), cmp.Compare(ra.InFlight, rb.InFlight), ra.LastUsed.Compare(rb.LastUsed), cmp.Compare(a, b))
	}
	var p Plan
	// Rolling: keep as many old replicas as the Ready current ones fall
	// short of the desired count.
	if keep := max(0, min(len(old), desired-ready)); len(old) > keep {
		slices.SortFunc(old, idlest)
		p.Drain = append(p.Drain, old[:len(old)-keep]...)
	}
	have := len(current) + starting
	if excess := have - desired; excess > starting {
		settled := make([]int, 0, len(current))
		for _, i := range current {
			if replicas[i].Ready && now.Sub(replicas[i].ReadyAt) >= settle {
				settled = append(settled, i)
			}
		}
		slices.SortFunc(settled, idlest)
		p.Drain = append(p.Drain, settled[:min(excess-starting, len(settled))]...)
	}
	p.Start = starting
	if missing := desired - have; missing > 0 {
		p.Start += missing
	}
	return p
}

// steadyRank orders the replicas to drain: the others before the steady
// ones.
func steadyRank(r Replica) int {
	if r.Steady {
		return 1
	}
	return 0
}
