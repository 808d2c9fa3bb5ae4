package coldstart

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// fakeCreator creates pods for steady instances and records what it was
// asked.
type fakeCreator struct {
	mu      sync.Mutex
	specs   []warmpool.PodSpec
	deleted []string
	err     error
}

func (c *fakeCreator) Create(_ context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.specs = append(c.specs, spec)
	if c.err != nil {
		return warmpool.Pod{}, c.err
	}
	return warmpool.Pod{ID: spec.Name, Node: "n1", Addr: "10.0.1.1:8080", Runtime: spec.Runtime, Labels: spec.Labels}, nil
}

func (c *fakeCreator) Delete(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted = append(c.deleted, id)
	return nil
}

func TestStartDedicatedCreatesAPodForTheFunction(t *testing.T) {
	pool, agent, pods := &fakePool{}, &fakeAgent{}, &fakeCreator{}
	s, reps := newStarter(t, pool, agent, nil)
	fn := testFunction("Orders/Resize@v2")
	fn.Generation = 7
	fn.Limits = lifecycle.Limits{MemoryBytes: 256 << 20}
	res, err := s.StartDedicated(context.Background(), pods, fn)
	require.NoError(t, err)

	inst := res.Instance
	assert.Equal(t, lifecycle.Ready, inst.State())
	assert.True(t, inst.Dedicated, "a steady instance")
	takes, _ := pool.stats()
	assert.Zero(t, takes, "no pod taken from the warm pool")
	require.Len(t, pods.specs, 1)
	spec := pods.specs[0]
	assert.Equal(t, &warmpool.FunctionPod{FunctionID: "Orders/Resize@v2", Generation: 7, Limits: fn.Limits}, spec.Function)
	assert.Equal(t, "Orders_Resize_v2", spec.Labels[warmpool.FunctionLabel], "a valid label value")
	assert.True(t, strings.HasPrefix(spec.Name, "steady-orders-resize-v2-"), spec.Name)
	assert.Equal(t, int64(1), agent.loads.Load(), "loaded as a warm pod would be")
	require.Len(t, reps.list(), 1)
	assert.True(t, reps.list()[0].Dedicated)

	// A failed load deletes the created pod through the creator, not the
	// pool.
	agent.set(func(a *fakeAgent) { a.loadErr = lifecycle.Errorf(lifecycle.CodeLoadFailed, "boom") })
	_, err = s.StartDedicated(context.Background(), pods, fn)
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepLoad, se.Step)
	assert.Equal(t, []string{pods.specs[1].Name}, pods.deleted)
	_, poolDeleted := pool.stats()
	assert.Empty(t, poolDeleted)

	// A failed creation is the take step.
	pods.err = fmt.Errorf("quota exceeded")
	_, err = s.StartDedicated(context.Background(), pods, fn)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepTake, se.Step)
	_, err = s.StartDedicated(context.Background(), nil, fn)
	require.Error(t, err)
}

func TestDedicatedPodNames(t *testing.T) {
	for id, prefix := range map[string]string{
		"resize":                "steady-resize-",
		"Team.A/img:resize":     "steady-team-a-img-resize-",
		strings.Repeat("x", 99): "steady-" + strings.Repeat("x", 40) + "-",
		"--":                    "steady-",
	} {
		a, b := DedicatedPodName(id), DedicatedPodName(id)
		assert.True(t, strings.HasPrefix(a, prefix), "%q: %q", id, a)
		assert.NotEqual(t, a, b, "fresh names")
		assert.LessOrEqual(t, len(a), 63, "a DNS label")
	}
}
