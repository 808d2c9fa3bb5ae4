package warmpool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConcurrentTakesTicksAndDeletes runs takes, blocking takes, deletions
// and upkeep rounds of two managers at the same time (for the race
// detector), then checks that no pod was handed out twice.
func TestConcurrentTakesTicksAndDeletes(t *testing.T) {
	e := newEnv(t)
	var mgrs []*Manager
	for i, id := range []string{"a", "b"} {
		cfg := e.config(id)
		// Distinct seeds: two managers with one seed draw the same pod
		// names, and a name reused after a deletion would look like a
		// pod handed out twice.
		cfg.Seed = uint64(i + 1)
		cfg.Runtimes = map[string]RuntimeConfig{"go": {Min: 3, Max: 6}}
		mgrs = append(mgrs, e.manager(t, cfg))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[string]bool{}
	var dups []string
	record := func(p Pod) {
		mu.Lock()
		defer mu.Unlock()
		if seen[p.ID] {
			dups = append(dups, p.ID)
		}
		seen[p.ID] = true
	}
	var wg sync.WaitGroup
	for _, m := range mgrs {
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := m.TryTake(ctx, "go", nil)
				if err == nil {
					record(p)
					_ = m.Delete(ctx, p)
				}
			}
		})
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := m.Take(ctx, "go", nil) // waits for the rounds below
				if err == nil {
					record(p)
				} else if !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}
		})
	}
	for i := range 300 {
		e.clock.Advance(time.Second)
		require.NoError(t, mgrs[i%2].Tick(ctx))
	}
	cancel()
	wg.Wait()
	require.Empty(t, dups)
	require.NotEmpty(t, seen)
}
