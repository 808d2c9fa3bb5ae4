package faas

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// A function with SteadyInstances gets instances on pods created for it;
// they replace the warm-pool instances it started with, which drain, and
// the warm pool keeps its pods for bursts.
func TestSteadyInstancesReplaceWarmPoolInstances(t *testing.T) {
	agents := newFakeAgents()
	e := newFakeEnv(t, agents, func(c *Config) { c.Scaler.ScaleDownDelay = time.Millisecond })
	deployAndWarm(t, e, FunctionSpec{ID: "steady", MinInstances: 2, SteadyInstances: 2, KeepAlive: time.Hour})
	require.Eventually(t, func() bool {
		st, _ := e.dp.FunctionStats("steady")
		return st.Steady == 2 && st.Instances[lifecycle.Ready] == 2
	}, 10*time.Second, 5*time.Millisecond, "two steady instances, and only them")

	// Their pods were created for the function and labelled so.
	pods, err := e.pods.List(context.Background())
	require.NoError(t, err)
	dedicated := 0
	for _, p := range pods {
		if p.Labels[warmpool.FunctionLabel] == "steady" {
			dedicated++
		}
	}
	assert.GreaterOrEqual(t, dedicated, 2)

	// Requests are served by them.
	resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "steady", Body: []byte("x")})
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)

	// The count is a ceiling: no further steady instance starts.
	require.Never(t, func() bool {
		st, _ := e.dp.FunctionStats("steady")
		return st.Steady > 2
	}, 300*time.Millisecond, 10*time.Millisecond)
}

func TestSteadyInstancesValidate(t *testing.T) {
	s := validSpec()
	s.SteadyInstances = -1
	err := s.Validate()
	var se *SpecError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "SteadyInstances", se.Fields[0].Field)
}

// With real agent processes: the steady instance runs on a pod of its own
// and serves.
func TestSteadyInstanceWithRealAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Scaler.ScaleDownDelay = time.Millisecond })
	spec := specFor("steady-e2e", "hello")
	spec.MinInstances, spec.SteadyInstances = 1, 1
	e.deploy(spec)
	require.Eventually(t, func() bool {
		st, _ := e.dp.FunctionStats(spec.ID)
		return st.Steady == 1 && st.Instances[lifecycle.Ready] == 1
	}, 20*time.Second, 10*time.Millisecond)
	status, _, body := e.do("POST", "/invoke/"+spec.ID, nil, "to the steady one")
	require.Equal(t, 200, status, body)
	assert.Contains(t, body, "to the steady one")
	pods, err := e.pods.List(context.Background())
	require.NoError(t, err)
	found := false
	for _, p := range pods {
		found = found || p.Labels[warmpool.FunctionLabel] == spec.ID
	}
	assert.True(t, found, "an agent process created for the function")
}
