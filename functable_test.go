package faas

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// The table behaves as a map under random stores and deletes, and its
// iteration visits every function once.
func TestFuncTableMatchesAMap(t *testing.T) {
	tab := newFuncTable()
	want := map[string]*function{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		id := fmt.Sprintf("f%d", r.IntN(2000))
		if r.IntN(3) == 0 {
			tab.delete(id)
			delete(want, id)
		} else {
			fn := &function{id: id}
			tab.store(fn)
			want[id] = fn
		}
	}
	for id, fn := range want {
		require.Same(t, fn, tab.load(id))
	}
	require.Nil(t, tab.load("missing"))
	seen := map[string]bool{}
	for fn := range tab.all() {
		require.False(t, seen[fn.id])
		seen[fn.id] = true
		require.Same(t, want[fn.id], fn)
	}
	require.Len(t, seen, len(want))
}

// Readers never see a torn table while writers store and delete (-race).
func TestFuncTableConcurrentReaders(t *testing.T) {
	tab := newFuncTable()
	stable := &function{id: "stable"}
	tab.store(stable)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if tab.load("stable") != stable {
					t.Error("a function that was never removed went missing")
					return
				}
			}
		})
	}
	for i := range 5000 {
		id := fmt.Sprintf("f%d", i%300)
		tab.store(&function{id: id})
		if i%2 == 0 {
			tab.delete(id)
		}
	}
	close(stop)
	wg.Wait()
}
