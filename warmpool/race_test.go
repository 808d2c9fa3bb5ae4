package warmpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
	// took counts the pods each taker got: a TryTake-and-Delete taker and
	// a blocking taker per manager.
	var took [4]atomic.Int64
	var wg sync.WaitGroup
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	defer stop() // a failed round must not leave the takers running
	for i, m := range mgrs {
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := m.TryTake(ctx, "go", nil)
				if err == nil {
					record(p)
					took[2*i].Add(1)
					_ = m.Delete(ctx, p)
				}
			}
		})
		wg.Go(func() {
			for ctx.Err() == nil {
				p, err := m.Take(ctx, "go", nil) // waits for the rounds below
				if err == nil {
					record(p)
					took[2*i+1].Add(1)
				} else if !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}
		})
	}
	// At least 300 rounds, and on until every taker has had a pod: on a
	// busy machine the takers may not be scheduled at all while the main
	// goroutine runs the first 300, and the run would then check nothing.
	// A taker always gets one eventually (each round refills the pools),
	// so the bound only catches a manager that stopped handing out pods.
	counts := func() (n [4]int64, all bool) {
		all = true
		for j := range took {
			n[j] = took[j].Load()
			all = all && n[j] > 0
		}
		return n, all
	}
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		if n, all := counts(); i >= 300 && all {
			t.Logf("%d rounds; pods taken per taker (try, blocking; per manager): %v", i, n)
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after %d rounds, some taker never got a pod: %v", i, n)
		}
		e.clock.Advance(time.Second)
		require.NoError(t, mgrs[i%2].Tick(ctx))
	}
	stop()
	require.Empty(t, dups)
	require.NotEmpty(t, seen)
}
