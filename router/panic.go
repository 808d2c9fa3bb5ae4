package router

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// The panic rules (HealthConfig.PanicThreshold): when too many of a
// function's instances, or all of a node's, fail their pull checks at the
// same time, the likelier fault is the checker's own network, and acting on
// the checks would drain healthy instances and replace them all. The
// monitor then stops acting on those failures and routes on the passive
// signals (breakers) and the agents' definite answers.
//
// "At the same time" means failure streaks that overlap: the count is of
// instances whose latest check failed or that pull checks hold out, taken
// after every round and before any of its verdicts is applied. So a trickle
// of failures is handled one by one while the share failing at once stays
// within the threshold, and the share held out by pull checks never
// exceeds it.

// tally counts a group's instances and those failing their latest check.
type tally struct{ failing, total int }

// tolerated returns how many of n instances may fail together before their
// function panics: PanicThreshold × n, rounded down. The epsilon keeps a
// product such as 0.29 × 100 = 28.999… from losing an instance.
func (h *HealthMonitor) tolerated(n int) int {
	return int(h.cfg.PanicThreshold*float64(n) + 1e-9)
}

// assess counts the failing instances of every function and node among
// members, decides which groups panic, logs the transitions and publishes
// the result; h.round held.
func (h *HealthMonitor) assess(members []*member) {
	var fnPanic, nodePanic map[string]tally
	var fns, nodes map[string]tally
	if h.cfg.PanicThreshold >= 0 {
		fns, nodes = make(map[string]tally), make(map[string]tally)
		for _, m := range members {
			st := h.probes[m]
			if st == nil || st.gone {
				continue // being removed: neither failing nor healthy
			}
			// Held out counts as failing until a readiness check lets it
			// back, even if a liveness check passed since.
			failing := st.failing || st.out
			count(fns, m.inst.FunctionID, failing)
			if m.inst.Node != "" {
				count(nodes, m.inst.Node, failing)
			}
		}
		fnPanic, nodePanic = make(map[string]tally), make(map[string]tally)
		for id, t := range fns {
			if t.total >= h.cfg.PanicMinInstances && t.failing > h.tolerated(t.total) {
				fnPanic[id] = t
			}
		}
		for node, t := range nodes {
			if t.total >= h.cfg.PanicMinInstances && t.failing == t.total {
				nodePanic[node] = t
			}
		}
	}
	h.logTransitions("function", h.fnPanic, fnPanic, fns)
	h.logTransitions("node", h.nodePanic, nodePanic, nodes)
	h.pmu.Lock()
	h.fnPanic, h.nodePanic = fnPanic, nodePanic
	h.pmu.Unlock()
	for _, m := range members {
		// Stats reads the flag; store only changes, so that the
		// function's cache line is not written every round.
		if _, p := fnPanic[m.inst.FunctionID]; m.fn.panicking.Load() != p {
			m.fn.panicking.Store(p)
		}
	}
}

func count(groups map[string]tally, key string, failing bool) {
	t := groups[key]
	t.total++
	if failing {
		t.failing++
	}
	groups[key] = t
}

// logTransitions logs, once each, the groups of kind that entered and left
// panic between was and now; counts has every group's latest tally. In
// sorted order, so that a simulated run logs the same way.
func (h *HealthMonitor) logTransitions(kind string, was, now, counts map[string]tally) {
	for _, id := range slices.Sorted(maps.Keys(now)) {
		if _, ok := was[id]; !ok {
			t := now[id]
			h.log.Warn("health: pull checks failing together; suspecting the checker's network, not acting on them",
				kind, id, "failing", t.failing, "instances", t.total, "threshold", h.cfg.PanicThreshold)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(was)) {
		if _, ok := now[id]; !ok {
			t := counts[id]
			h.log.Warn("health: panic over; acting on pull checks again",
				kind, id, "failing", t.failing, "instances", t.total)
		}
	}
}

// shielded reports whether m's pull-check failures are suspended by a
// panic of its function or its node; h.round held.
func (h *HealthMonitor) shielded(m *member) bool {
	if _, ok := h.fnPanic[m.inst.FunctionID]; ok {
		return true
	}
	_, ok := h.nodePanic[m.inst.Node] // never has the empty node
	return ok
}

// letBack readmits the shielded members that pull checks hold out: in
// panic the monitor routes as if its checks had passed, as Envoy routes to
// every host, and leaves the broken ones to the breakers; h.round held.
func (h *HealthMonitor) letBack(now time.Time, members []*member) {
	for _, m := range members {
		st := h.probes[m]
		if st == nil || !st.out || !h.shielded(m) {
			continue
		}
		st.out, st.readyFails, st.liveFails = false, 0, 0
		h.r.setHealth(now, m, healthPull, true, CauseHealthPanic, h.panicReason(m))
	}
}

// panicReason says why m is shielded; h.round held.
func (h *HealthMonitor) panicReason(m *member) string {
	if t, ok := h.fnPanic[m.inst.FunctionID]; ok {
		return fmt.Sprintf("pull checks suspended: %d of %d instances of the function failing together", t.failing, t.total)
	}
	t := h.nodePanic[m.inst.Node]
	return fmt.Sprintf("pull checks suspended: all %d instances on node %s failing together", t.total, m.inst.Node)
}

// PanickingNodes returns, sorted, the nodes whose routed instances all
// failed their latest pull checks at the latest round (at least
// HealthConfig.PanicMinInstances of them): the monitor takes them for its
// own partition from those nodes and does not act on their failures. The
// functions in panic show in [Stats].Panicking.
func (h *HealthMonitor) PanickingNodes() []string {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	return slices.Sorted(maps.Keys(h.nodePanic))
}
