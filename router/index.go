package router

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// index maps function IDs to their entries. Lookups are lock-free and cost
// the same whatever the number of functions: one hash, one load of the
// bucket array, one load of a bucket, and a walk of its chain, which stays
// short because the bucket array doubles whenever the entries would exceed
// half the buckets (a lookup passes on average fewer than 0.25 other
// nodes). Chains are immutable lists: an insertion publishes a new head in
// front of the old chain, a removal copies the nodes before the removed
// one, so a reader never sees a half-written chain. Writers serialize on mu;
// function entries are created and deleted far less often than instances
// change, so one lock for the whole index is not contended. (sync.Map would
// serve, but its hash-trie lookups get deeper as the map grows, which the
// pick's cost must not.)
type index struct {
	seed maphash.Seed
	cur  atomic.Pointer[bucketArray]

	mu sync.Mutex // serializes writers
	n  int        // entries, under mu
}

type bucketArray struct {
	mask    uint64
	buckets []atomic.Pointer[node]
}

// node is one link of a bucket's chain; immutable once published. It holds
// the ID and hash itself so that a lookup compares without loading the
// function entry.
type node struct {
	hash uint64
	id   string
	fn   *function
	next *node
}

const minBuckets = 16

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed()}
	ix.cur.Store(newBucketArray(minBuckets))
	return ix
}

func newBucketArray(n int) *bucketArray {
	return &bucketArray{mask: uint64(n - 1), buckets: make([]atomic.Pointer[node], n)}
}

func (ix *index) hash(id string) uint64 { return maphash.String(ix.seed, id) }

// get returns the entry for id, or nil.
func (ix *index) get(id string) *function {
	h := ix.hash(id)
	a := ix.cur.Load()
	for n := a.buckets[h&a.mask].Load(); n != nil; n = n.next {
		if n.hash == h && n.id == id {
			return n.fn
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
	if 2*(ix.n+1) > len(a.buckets) {
		a = ix.grow(a)
	}
	slot := &a.buckets[f.hash&a.mask]
	slot.Store(&node{hash: f.hash, id: f.id, fn: f, next: slot.Load()})
	ix.n++
	return f
}

// grow publishes a bucket array twice as large; called with mu held.
func (ix *index) grow(old *bucketArray) *bucketArray {
	next := newBucketArray(2 * len(old.buckets))
	for i := range old.buckets {
		for n := old.buckets[i].Load(); n != nil; n = n.next {
			slot := &next.buckets[n.hash&next.mask]
			slot.Store(&node{hash: n.hash, id: n.id, fn: n.fn, next: slot.Load()})
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
	head := slot.Load()
	var before []*node
	n := head
	for n != nil && n.fn != f {
		before = append(before, n)
		n = n.next
	}
	if n == nil {
		return
	}
	// Copy the nodes in front of n onto n's successor.
	rest := n.next
	for i := len(before) - 1; i >= 0; i-- {
		b := before[i]
		rest = &node{hash: b.hash, id: b.id, fn: b.fn, next: rest}
	}
	slot.Store(rest)
	ix.n--
}

// len returns the number of entries.
func (ix *index) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.n
}
