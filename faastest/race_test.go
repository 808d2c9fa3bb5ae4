package faastest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFakesUnderConcurrency hammers every fake from several goroutines;
// under -race it checks that they are safe for concurrent use, and the
// counts check that nothing was lost.
func TestFakesUnderConcurrency(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := NewClock(Epoch)
	pods := NewPodProvider(PodProviderConfig{Nodes: []string{"a", "b", "c"}, FailRate: 0.1, Seed: 1})
	events, err := pods.Watch(ctx)
	require.NoError(t, err)
	go func() {
		for range events { // drain, so the watcher never falls behind
		}
	}()
	store := NewCodeStore(CodeStoreConfig{FailRate: 0.1, Seed: 2})
	ref := store.Add([]byte("code"))
	health := NewHealthChecker()
	leases := NewLeaseStore(clk)
	inst := lifecycle.NewInstance(lifecycle.Info{ID: "i", FunctionID: "f"}, Epoch)

	const workers, rounds = 4, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				name := fmt.Sprintf("w%d-%d", w, i)
				if pod, err := pods.Create(ctx, warmpool.PodSpec{Name: name, Runtime: "go"}); err == nil {
					if i%2 == 0 {
						_ = pods.Crash(pod.ID)
					} else {
						_ = pods.Delete(ctx, pod.ID)
					}
				}
				_, _ = pods.List(ctx)
				if rc, err := store.Open(ctx, ref); err == nil {
					_, _ = io.Copy(io.Discard, rc)
					_ = rc.Close()
				}
				health.Flip("i")
				_ = health.Check(ctx, inst)
				if l, err := leases.Acquire(ctx, name, "m", time.Second); err == nil {
					_, _ = leases.Renew(ctx, []warmpool.Lease{l}, time.Second)
					_ = leases.Claim(ctx, l)
				}
				clk.Advance(time.Millisecond)
			}
		})
	}
	wg.Wait()
	ps := pods.Stats()
	assert.Equal(t, workers*rounds, ps.Created+ps.Failed)
	assert.Equal(t, ps.Created, ps.Crashed+ps.Deleted)
	assert.Zero(t, ps.Live)
	cs := store.Stats()
	assert.EqualValues(t, workers*rounds, cs.Hits+cs.Failures)
	assert.Equal(t, workers*rounds, health.Checks("i"))
	assert.True(t, health.Healthy("i"), "an even number of flips")
	assert.Equal(t, 3*workers*rounds, leases.Ops())
	assert.Equal(t, Epoch.Add(workers*rounds*time.Millisecond), clk.Now())
}
