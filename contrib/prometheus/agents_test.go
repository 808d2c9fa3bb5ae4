package prometheus

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

// TestAgentCountersNeverGoDown: as instances answer, fail to answer and
// leave the routes, a function's counters only grow.
func TestAgentCountersNeverGoDown(t *testing.T) {
	a, err := NewAgentCollector(nil, nil, AgentConfig{})
	require.NoError(t, err)
	ans := func(id string, completed int64, err error) agentAnswer {
		return agentAnswer{t: agentTarget{id: id, label: "f"}, st: lifecycle.Stats{Completed: completed, BilledMillis: completed * 2, InFlight: 1}, err: err}
	}
	routed := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	steps := []struct {
		answers   []agentAnswer
		routed    map[string]bool
		completed float64
		answered  float64
	}{
		{[]agentAnswer{ans("i-1", 5, nil), ans("i-2", 3, nil)}, routed("i-1", "i-2"), 8, 2},
		{[]agentAnswer{ans("i-1", 7, nil), ans("i-2", 0, errors.New("timeout"))}, routed("i-1", "i-2"), 10, 1}, // i-2 keeps its 3
		{[]agentAnswer{ans("i-1", 9, nil)}, routed("i-1"), 12, 1},                                              // i-2 left: its 3 retire
		{nil, routed(), 12, 0}, // all gone
		{[]agentAnswer{ans("i-3", 1, nil)}, routed("i-3"), 13, 1},
	}
	prev := 0.0
	for i, s := range steps {
		totals, answered, _ := a.update(s.answers, s.routed)
		got := 0.0
		if tot := totals["f"]; tot != nil {
			got = tot.completed
			assert.Equal(t, 2*got, tot.billedMillis, "step %d", i)
		}
		assert.Equal(t, s.completed, got, "step %d", i)
		assert.Equal(t, s.answered, answered["f"], "step %d", i)
		assert.GreaterOrEqual(t, got, prev, "step %d: a counter never goes down", i)
		prev = got
	}
	assert.Equal(t, 1.0, a.errs)
	assert.Len(t, a.live, 1, "only routed instances are remembered one by one")
}
