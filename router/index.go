package router

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// index maps function IDs to their entries. Lookups are lock-free and cost
// the same whatever the number of functions: one hash, one load of the
// bucket array, one load of a bucket, and a comparison of the few entries in
// it. Buckets are immutable slices replaced on write (copy-on-write per
// bucket), so a reader never sees a half-written bucket; the bucket array
// doubles when the entries outnumber the buckets, which keeps the expected
// bucket length below one. Writers serialize on mu; function entries are
// created and deleted far less often than instances change, so one lock for
// the whole index is not contended. (sync.Map would serve, but its hash-trie
// lookups get deeper as the map grows, which the pick's cost must not.)
type index struct {
	seed maphash.Seed
	cur  atomic.Pointer[bucketArray]

	mu sync.Mutex // serializes writers
	n  int        // entries, under mu
}

type bucketArray struct {
	mask    uint64
	buckets []atomic.Pointer[bucket]
}

// bucket is immutable once published.
type bucket struct {
	entries []*function
}

const minBuckets = 16

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed()}
	ix.cur.Store(newBucketArray(minBuckets))
	return ix
}

func newBucketArray(n int) *bucketArray {
	return &bucketArray{mask: uint64(n - 1), buckets: make([]atomic.Pointer[bucket], n)}
}

func (ix *index) hash(id string) uint64 { return maphash.String(ix.seed, id) }

// get returns the entry for id, or nil.
func (ix *index) get(id string) *function {
	h := ix.hash(id)
	a := ix.cur.Load()
	b := a.buckets[h&a.mask].Load()
	if b == nil {
		return nil
	}
	for _, f := range b.entries {
		if f.hash == h && f.id == id {
			return f
		}
	}
	return nil
}

// getOrCreate returns the entry for id, creating it with mk when absent.
func (ix *index) getOrCreate(id string, mk func(id string, hash uint64) *function) *function {
	if f := ix.get(id); f != nil {
		return f
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if f := ix.get(id); f != nil {
		return f
	}
	f := mk(id, ix.hash(id))
	a := ix.cur.Load()
	if ix.n+1 > len(a.buckets) {
		a = ix.grow(a)
	}
	slot := &a.buckets[f.hash&a.mask]
	var entries []*function
	if b := slot.Load(); b != nil {
		entries = b.entries
	}
	slot.Store(&bucket{entries: append(slices.Clip(entries), f)})
	ix.n++
	return f
}

// grow publishes a bucket array twice as large; called with mu held.
func (ix *index) grow(old *bucketArray) *bucketArray {
	next := newBucketArray(2 * len(old.buckets))
	lists := make([][]*function, len(next.buckets))
	for i := range old.buckets {
		if b := old.buckets[i].Load(); b != nil {
			for _, f := range b.entries {
				j := f.hash & next.mask
				lists[j] = append(lists[j], f)
			}
		}
	}
	for j, l := range lists {
		if l != nil {
			next.buckets[j].Store(&bucket{entries: l})
		}
	}
	ix.cur.Store(next)
	return next
}

// remove deletes f if it is the entry for its ID.
func (ix *index) remove(f *function) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	a := ix.cur.Load()
	slot := &a.buckets[f.hash&a.mask]
	b := slot.Load()
	if b == nil {
		return
	}
	i := slices.Index(b.entries, f)
	if i < 0 {
		return
	}
	if len(b.entries) == 1 {
		slot.Store(nil)
	} else {
		slot.Store(&bucket{entries: slices.Delete(slices.Clone(b.entries), i, i+1)})
	}
	ix.n--
}

// len returns the number of entries.
func (ix *index) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.n
}
