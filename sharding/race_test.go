package sharding

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConcurrentLookupsWhileTablesArePublished runs readers against an
// atomic.Pointer while a writer publishes new tables; run under -race. Every
// answer must be a member of some table that was published.
func TestConcurrentLookupsWhileTablesArePublished(t *testing.T) {
	var cur atomic.Pointer[Table]
	cur.Store(MustNew(equalNodes(8, "n")...))
	everMember := sync.Map{}
	for _, n := range cur.Load().Nodes() {
		everMember.Store(n.ID, true)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [3]Node
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tab := cur.Load()
				key := fmt.Sprintf("r%d-k%d", r, i%1000)
				n, ok := tab.Pick(key)
				list := tab.Rank(key, 3, buf[:0])
				if !ok || list[0] != n {
					errs <- fmt.Errorf("inconsistent lookup on one table: %v %v", n, list)
					return
				}
				if _, known := everMember.Load(n.ID); !known {
					errs <- fmt.Errorf("pick returned never-published node %q", n.ID)
					return
				}
			}
		}()
	}
	for i := range 200 {
		tab := cur.Load()
		id := fmt.Sprintf("w%d", i)
		everMember.Store(id, true)
		next, err := tab.Add(Node{ID: id, Weight: float64(1 + i%3)})
		require.NoError(t, err)
		if next.Len() > 12 {
			next, err = next.Remove(next.Nodes()[0].ID)
			require.NoError(t, err)
		}
		cur.Store(next)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
