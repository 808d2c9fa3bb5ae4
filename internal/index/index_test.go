package index

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMatchesAGoMap applies random operations to a Map and to a Go map and
// compares them after every step.
func TestMatchesAGoMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := New[*int]()
	ref := map[string]*int{}
	for step := range 20000 {
		key := "k" + strconv.Itoa(rng.IntN(500))
		switch rng.IntN(4) {
		case 0:
			v := new(int)
			*v = step
			m.Store(key, v)
			ref[key] = v
		case 1:
			m.Delete(key)
			delete(ref, key)
		case 2:
			v := new(int)
			got := m.GetOrCreate(key, func(string) *int { return v })
			if old, ok := ref[key]; ok {
				require.Same(t, old, got)
			} else {
				require.Same(t, v, got)
				ref[key] = v
			}
		case 3:
			other := new(int)
			require.False(t, m.CompareAndDelete(key, other), "a value that is not the key's")
			if v, ok := ref[key]; ok && rng.IntN(2) == 0 {
				require.True(t, m.CompareAndDelete(key, v))
				delete(ref, key)
			}
		}
		got, ok := m.Get(key)
		want, wok := ref[key]
		require.Equal(t, wok, ok)
		require.Same(t, want, got)
		require.Equal(t, len(ref), m.Len())
	}
	all := slices.Collect(m.All())
	require.ElementsMatch(t, slices.Collect(maps.Values(ref)), all)
}

func TestConcurrentReadersSeeStableKeys(t *testing.T) {
	m := New[string]()
	for i := range 100 {
		m.Store(fmt.Sprint("stable", i), "v")
	}
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
				for i := range 100 {
					if v, ok := m.Get(fmt.Sprint("stable", i)); !ok || v != "v" {
						t.Errorf("stable key %d lost", i)
						return
					}
				}
			}
		})
	}
	for i := range 5000 { // writers grow and shrink the table meanwhile
		k := fmt.Sprint("churn", i)
		m.Store(k, "x")
		if i%2 == 0 {
			m.Delete(k)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkGet(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			m := New[*int]()
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "fn-" + strconv.Itoa(i)
				m.Store(keys[i], new(int))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, ok := m.Get(keys[i%n]); !ok {
					b.Fatal("missing")
				}
			}
		})
	}
}

// TestLookupCostDoesNotGrow checks the property behind "the cost of a
// lookup does not depend on the number of keys": the mean number of chain
// nodes a successful lookup visits stays near one (1 + load/2, with the load
// kept at or below 1/2) at 10 and at 100,000 keys.
func TestLookupCostDoesNotGrow(t *testing.T) {
	// Each map hashes with its own seed: a small one is averaged over many
	// maps, or a few collisions among 10 keys would decide.
	for _, tc := range []struct{ n, maps int }{{10, 200}, {100_000, 1}} {
		visited, nbuckets := 0, 0
		for range tc.maps {
			m := New[int]()
			for i := range tc.n {
				m.Store(fmt.Sprintf("function-%06d", i), i)
			}
			b := m.cur.Load()
			nbuckets = len(b.heads)
			for i := range b.heads {
				pos := 0
				for nd := b.heads[i].Load(); nd != nil; nd = nd.next {
					pos++
					visited += pos // a lookup of nd walks pos nodes
				}
			}
		}
		mean := float64(visited) / float64(tc.n*tc.maps)
		t.Logf("%d keys: %d buckets, mean nodes visited %.3f", tc.n, nbuckets, mean)
		require.Less(t, mean, 1.3, "%d keys", tc.n)
		require.LessOrEqual(t, 2*tc.n, nbuckets)
	}
}
