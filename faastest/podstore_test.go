package faastest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/warmpool"
)

func TestPodStore(t *testing.T) {
	ctx := context.Background()
	clk := NewClock(time.Time{})
	p, err := newPodStore(podStoreConfig{Nodes: []string{"n1", "n2"}, Now: clk.Now},
		warmpool.Pod{ID: "manual", Node: "n9", Addr: "127.0.0.1:1", Runtime: "go"})
	require.NoError(t, err)

	watchCtx, stopWatch := context.WithCancel(ctx)
	events, err := p.Watch(watchCtx)
	require.NoError(t, err)

	a, err := p.Create(ctx, warmpool.PodSpec{Name: "a", Runtime: "go", Labels: map[string]string{"x": "y"}})
	require.NoError(t, err)
	assert.Equal(t, warmpool.Pod{ID: "a", Node: "n2", Addr: "a.invalid:8080", Runtime: "go", Labels: map[string]string{"x": "y"}, Created: Epoch}, a)
	b, err := p.Create(ctx, warmpool.PodSpec{Runtime: "python"})
	require.NoError(t, err)
	assert.Equal(t, "pod-1", b.ID)
	assert.Equal(t, "n1", b.Node)
	_, err = p.Create(ctx, warmpool.PodSpec{Name: "a", Runtime: "go"})
	require.ErrorIs(t, err, warmpool.ErrPodExists)
	_, err = p.Create(ctx, warmpool.PodSpec{Name: "z"})
	require.Error(t, err, "a runtime is required")

	list, err := p.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, []string{"a", "manual", "pod-1"}, []string{list[0].ID, list[1].ID, list[2].ID})
	list[0].Labels["x"] = "changed"
	got, ok := p.Get("a")
	require.True(t, ok)
	assert.Equal(t, "y", got.Labels["x"], "List returns copies")

	require.NoError(t, p.Delete(ctx, "a"))
	require.ErrorIs(t, p.Delete(ctx, "a"), warmpool.ErrPodNotFound)
	assert.Equal(t, 2, p.Len())

	assert.Equal(t, warmpool.PodEvent{Type: warmpool.PodAdded, Pod: a}, <-events)
	assert.Equal(t, warmpool.PodAdded, (<-events).Type)
	ev := <-events
	assert.Equal(t, warmpool.PodDeleted, ev.Type)
	assert.Equal(t, "a", ev.Pod.ID)
	stopWatch()
	for range events { // closed once the context ends
	}
	assert.Equal(t, "deleted", warmpool.PodDeleted.String())
}

func TestPodStoreRejectsBadPods(t *testing.T) {
	_, err := newPodStore(podStoreConfig{}, warmpool.Pod{ID: "x"})
	require.Error(t, err)
	p, err := newPodStore(podStoreConfig{}, warmpool.Pod{ID: "x", Addr: "a:1", Runtime: "go"})
	require.NoError(t, err)
	require.ErrorIs(t, p.Add(warmpool.Pod{ID: "y", Addr: "a:1", Runtime: "go"}, warmpool.Pod{ID: "y", Addr: "a:1", Runtime: "go"}), warmpool.ErrPodExists)
	assert.Equal(t, 1, p.Len(), "nothing is added when one pod is bad")
}

func TestPodStoreWatcherThatFallsBehindIsClosed(t *testing.T) {
	ctx := context.Background()
	p, err := newPodStore(podStoreConfig{})
	require.NoError(t, err)
	events, err := p.Watch(ctx)
	require.NoError(t, err)
	for range watchBuffer + 1 {
		_, err := p.Create(ctx, warmpool.PodSpec{Runtime: "go"})
		require.NoError(t, err)
	}
	n := 0
	for range events {
		n++
	}
	assert.Equal(t, watchBuffer, n)
}
