package faastest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Thresholds above which a limit, not the policy, decided a run's outcome
// (see [Report.Decided]).
const (
	// DecidedRequests: the limit refused or failed at least this share of
	// the invocations.
	DecidedRequests = 0.01
	// DecidedColdStarts: the limit delayed at least this share of the
	// cold starts.
	DecidedColdStarts = 0.10
)

// Limits says what each of the platform's bounds did during a run: the
// requests it refused or failed, and the cold starts it delayed. These
// are the outcomes a policy under test does not decide: a comparison of
// two policies whose results hinge on a limit compares the limit.
type Limits struct {
	// Shedder: requests the load shedder refused.
	Shedder Bound `json:"shedder"`
	// FunctionLimit: requests refused by a function-wide concurrency
	// limit (FunctionSpec.MaxConcurrency).
	FunctionLimit Bound `json:"function_limit"`
	// MaxQueue: requests refused by a full wait queue.
	MaxQueue Bound `json:"max_queue"`
	// MaxColdStarts: requests that timed out while a cold start of their
	// function waited under the cold-start bound, and the cold starts
	// that waited there.
	MaxColdStarts Bound `json:"max_cold_starts"`
	// MaxParallelCreates: requests that timed out while a cold start of
	// their function waited for a pod with pod creations at their bound,
	// and the cold starts that did.
	MaxParallelCreates Bound `json:"max_parallel_creates"`
	// MaxInstances: requests that timed out while their function had
	// MaxInstances instances; Capped counts the decisions it lowered.
	MaxInstances Bound `json:"max_instances"`
}

// Bound is what one limit did.
type Bound struct {
	// Requests it refused, or that timed out because of it.
	Requests int64 `json:"requests"`
	// ColdStarts it delayed, and their total delay.
	ColdStarts int64         `json:"cold_starts"`
	Delay      time.Duration `json:"delay_ns"`
	// Capped counts the scaling decisions it lowered (MaxInstances).
	Capped int64 `json:"capped,omitempty"`
}

// Finding is one limit that decided a run's outcome.
type Finding struct {
	// Limit names it, as the field of [Limits].
	Limit string `json:"limit"`
	// RequestShare is the share of the invocations it refused or failed;
	// ColdStartShare the share of the cold starts it delayed.
	RequestShare   float64 `json:"request_share"`
	ColdStartShare float64 `json:"cold_start_share"`
	// Text says it in a sentence.
	Text string `json:"text"`
}

// limitStats accumulate Limits during a run (after the warm-up).
type limitStats struct {
	l                Limits
	maxInstancesCaps int64
}

// timedOut attributes a request of f that timed out to the bound that held
// its function back, if any.
func (l *limitStats) timedOut(s *sim, f *function) {
	creationsFull := f.dp.creating >= s.cfg.MaxParallelCreates
	switch {
	case f.gated > 0 && creationsFull && f.dp.podWaiters() > 0:
		// The gate is full of cold starts waiting for pods: the bound on
		// creations is the root cause.
		l.l.MaxParallelCreates.Requests++
	case f.gated > 0:
		l.l.MaxColdStarts.Requests++
	case f.podWait > 0 && creationsFull:
		l.l.MaxParallelCreates.Requests++
	case len(f.ready)+f.starting >= f.spec.MaxInstances:
		l.l.MaxInstances.Requests++
	}
}

// coldStart records the bounds a Ready cold start waited on.
func (l *limitStats) coldStart(cs *coldStart) {
	if cs.gated {
		l.l.MaxColdStarts.ColdStarts++
		l.l.MaxColdStarts.Delay += time.Duration(cs.began - cs.requested)
	}
	if cs.throttled {
		l.l.MaxParallelCreates.ColdStarts++
		l.l.MaxParallelCreates.Delay += time.Duration(cs.podAt - cs.began)
	}
}

// limits returns the run's Limits from the totals.
func (l *limitStats) limits(total *Stats) Limits {
	out := l.l
	out.Shedder.Requests = total.Shed
	out.FunctionLimit.Requests = total.Limited
	out.MaxQueue.Requests = total.QueueFull
	out.MaxInstances.Capped = l.maxInstancesCaps
	return out
}

// Decided returns the limits that decided the run's outcome: those that
// refused or failed at least DecidedRequests of the invocations, or
// delayed at least DecidedColdStarts of the cold starts. An empty answer
// means the policies did: no bound weighed on the figures. Compare two
// policies only on runs where this is empty, or where it is the same for
// both and the difference lies elsewhere.
func (r *Report) Decided() []Finding {
	var out []Finding
	inv, cold := float64(r.Total.Invocations), float64(r.Total.ColdStarts)
	share := func(n int64, of float64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / of
	}
	check := func(name string, l Bound, what string) {
		f := Finding{Limit: name, RequestShare: share(l.Requests, inv), ColdStartShare: share(l.ColdStarts, cold)}
		var parts []string
		if f.RequestShare >= DecidedRequests {
			parts = append(parts, fmt.Sprintf(what, 100*f.RequestShare))
		}
		if f.ColdStartShare >= DecidedColdStarts {
			parts = append(parts, fmt.Sprintf("delayed %.1f%% of the cold starts (by %s on average)",
				100*f.ColdStartShare, dur(l.Delay/time.Duration(max(l.ColdStarts, 1)))))
		}
		if len(parts) == 0 {
			return
		}
		f.Text = name + " " + strings.Join(parts, " and ")
		out = append(out, f)
	}
	lim := &r.Limits
	check("Shedder", lim.Shedder, "refused %.1f%% of the invocations")
	check("FunctionLimit", lim.FunctionLimit, "refused %.1f%% of the invocations")
	check("MaxQueue", lim.MaxQueue, "refused %.1f%% of the invocations")
	check("MaxColdStarts", lim.MaxColdStarts, "made %.1f%% of the invocations time out")
	check("MaxParallelCreates", lim.MaxParallelCreates, "made %.1f%% of the invocations time out")
	check("MaxInstances", lim.MaxInstances, "made %.1f%% of the invocations time out")
	// The most decisive first: by the invocations, then the cold starts.
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.RequestShare, a.RequestShare), cmp.Compare(b.ColdStartShare, a.ColdStartShare))
	})
	return out
}
