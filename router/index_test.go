package router

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexGrowsAndRemoves(t *testing.T) {
	ix := newIndex()
	mk := func(id string, h uint64) *function { return &function{id: id, hash: h} }
	const n = 5000
	entries := make(map[string]*function, n)
	for i := range n {
		id := fmt.Sprintf("fn-%d", i)
		f := ix.getOrCreate(id, mk)
		require.Equal(t, id, f.id)
		require.Same(t, f, ix.getOrCreate(id, mk), "a second call returns the same entry")
		entries[id] = f
	}
	assert.Equal(t, n, ix.len())
	buckets := len(ix.cur.Load().buckets)
	assert.GreaterOrEqual(t, buckets, 2*n, "the bucket array grew with the entries")
	assert.Less(t, buckets, 8*n)
	for id, f := range entries {
		require.Same(t, f, ix.get(id))
	}
	assert.Nil(t, ix.get("fn-missing"))

	for i := 0; i < n; i += 2 {
		id := fmt.Sprintf("fn-%d", i)
		ix.remove(entries[id])
		ix.remove(entries[id]) // twice: no effect
	}
	assert.Equal(t, n/2, ix.len())
	for i := range n {
		id := fmt.Sprintf("fn-%d", i)
		if i%2 == 0 {
			require.Nil(t, ix.get(id))
		} else {
			require.Same(t, entries[id], ix.get(id))
		}
	}
	// A stale entry (removed, then the ID re-created) is not removed by
	// its old pointer.
	old := entries["fn-1"]
	ix.remove(old)
	fresh := ix.getOrCreate("fn-1", mk)
	require.NotSame(t, old, fresh)
	ix.remove(old)
	require.Same(t, fresh, ix.get("fn-1"))
}

// TestIndexCollisions puts entries with the same hash in one bucket.
func TestIndexCollisions(t *testing.T) {
	ix := newIndex()
	mk := func(id string, h uint64) *function { return &function{id: id, hash: 42} }
	var fs []*function
	for i := range 10 {
		fs = append(fs, ix.getOrCreate(fmt.Sprintf("c%d", i), mk))
	}
	// get hashes the ID for real, so look at the chain they share, as get
	// walks it after a collision.
	chain := func() []*function {
		var out []*function
		a := ix.cur.Load()
		for n := a.buckets[42&a.mask].Load(); n != nil; n = n.next {
			out = append(out, n.fn)
		}
		return out
	}
	require.Len(t, chain(), 10)
	ix.remove(fs[3])
	assert.Len(t, chain(), 9)
	assert.NotContains(t, chain(), fs[3])
	assert.Equal(t, fs[9], chain()[0], "the newest entry heads the chain")
	ix.remove(fs[9])
	ix.remove(fs[0])
	assert.Len(t, chain(), 7)
	assert.Equal(t, 7, ix.len())
}

// TestIndexLookupCostDoesNotGrow checks the property behind "the cost of a
// pick does not depend on the number of functions": the mean number of
// chain nodes a successful lookup visits stays near one (1 + load/2, with
// the load kept at or below 1/2) at 10 and at 100,000 functions.
func TestIndexLookupCostDoesNotGrow(t *testing.T) {
	// Each index hashes with its own seed: a small one is averaged over
	// many indexes, or a few collisions among 10 keys would decide.
	for _, tc := range []struct{ n, indexes int }{{10, 200}, {100_000, 1}} {
		visited, buckets := 0, 0
		for range tc.indexes {
			ix := newIndex()
			mk := func(id string, h uint64) *function { return &function{id: id, hash: h} }
			for i := range tc.n {
				ix.getOrCreate(fmt.Sprintf("function-%06d", i), mk)
			}
			a := ix.cur.Load()
			buckets = len(a.buckets)
			for i := range a.buckets {
				pos := 0
				for nd := a.buckets[i].Load(); nd != nil; nd = nd.next {
					pos++
					visited += pos // a lookup of nd walks pos nodes
				}
			}
		}
		mean := float64(visited) / float64(tc.n*tc.indexes)
		t.Logf("%d functions: %d buckets, mean nodes visited %.3f", tc.n, buckets, mean)
		assert.Less(t, mean, 1.3, "%d functions", tc.n)
		assert.LessOrEqual(t, 2*tc.n, buckets)
	}
}
