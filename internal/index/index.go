// Package index is a map from string keys to values for hot paths: lookups
// are lock-free and cost the same whatever the number of keys, so that
// picking an instance or finding a function does not get slower as a fleet
// grows from ten functions to a hundred thousand. The router's route table
// and the Dataplane's function table both use it.
//
// A lookup is one hash, one load of the bucket array, one load of a bucket
// and a walk of its chain, which stays short because the bucket array
// doubles whenever the entries would exceed half the buckets (a lookup
// passes on average fewer than 0.25 other entries). Chains are immutable
// lists: an insertion publishes a new head in front of the old chain, a
// removal copies the entries before the removed one, so a reader never sees
// a half-written chain. Writers serialize on one lock: keys are added and
// removed far less often than they are read. (sync.Map would serve, but its
// hash-trie lookups get deeper as the map grows; a sharded copy-on-write
// map makes each insertion cost a copy of its shard.)
package index

import (
	"hash/maphash"
	"iter"
	"sync"
	"sync/atomic"
)

// Map maps strings to values of V. The zero value is not usable; call New.
// It is safe for concurrent use.
type Map[V comparable] struct {
	seed maphash.Seed
	cur  atomic.Pointer[buckets[V]]

	mu sync.Mutex // serializes writers
	n  int        // entries, under mu
}

type buckets[V comparable] struct {
	mask  uint64
	heads []atomic.Pointer[node[V]]
}

// node is one link of a chain; immutable once published. It holds the key
// and its hash, so that a lookup compares without loading the value.
type node[V comparable] struct {
	hash uint64
	key  string
	v    V
	next *node[V]
}

const minBuckets = 16

// New returns an empty map.
func New[V comparable]() *Map[V] {
	m := &Map[V]{seed: maphash.MakeSeed()}
	m.cur.Store(newBuckets[V](minBuckets))
	return m
}

func newBuckets[V comparable](n int) *buckets[V] {
	return &buckets[V]{mask: uint64(n - 1), heads: make([]atomic.Pointer[node[V]], n)}
}

// Get returns the value of key and whether there is one. It takes no lock
// and does not allocate.
func (m *Map[V]) Get(key string) (V, bool) {
	h := maphash.String(m.seed, key)
	b := m.cur.Load()
	for n := b.heads[h&b.mask].Load(); n != nil; n = n.next {
		if n.hash == h && n.key == key {
			return n.v, true
		}
	}
	var zero V
	return zero, false
}

// GetOrCreate returns the value of key, storing mk(key) first when there
// is none. mk runs under the writers' lock.
func (m *Map[V]) GetOrCreate(key string, mk func(key string) V) V {
	if v, ok := m.Get(key); ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.Get(key); ok {
		return v
	}
	v := mk(key)
	m.insertLocked(key, v)
	return v
}

// Store sets the value of key.
func (m *Map[V]) Store(key string, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteLocked(key, nil)
	m.insertLocked(key, v)
}

// Delete removes key.
func (m *Map[V]) Delete(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteLocked(key, nil)
}

// CompareAndDelete removes key if its value is v, and reports whether it
// did.
func (m *Map[V]) CompareAndDelete(key string, v V) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleteLocked(key, &v)
}

// Len returns the number of keys.
func (m *Map[V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// All iterates over the values, in no particular order, without a lock: it
// sees each value present for the whole iteration, and may or may not see
// the others.
func (m *Map[V]) All() iter.Seq[V] {
	return func(yield func(V) bool) {
		b := m.cur.Load()
		for i := range b.heads {
			for n := b.heads[i].Load(); n != nil; n = n.next {
				if !yield(n.v) {
					return
				}
			}
		}
	}
}

func (m *Map[V]) insertLocked(key string, v V) {
	h := maphash.String(m.seed, key)
	b := m.cur.Load()
	if 2*(m.n+1) > len(b.heads) {
		b = m.growLocked(b)
	}
	head := &b.heads[h&b.mask]
	head.Store(&node[V]{hash: h, key: key, v: v, next: head.Load()})
	m.n++
}

// growLocked publishes a bucket array twice as large.
func (m *Map[V]) growLocked(old *buckets[V]) *buckets[V] {
	next := newBuckets[V](2 * len(old.heads))
	for i := range old.heads {
		for n := old.heads[i].Load(); n != nil; n = n.next {
			head := &next.heads[n.hash&next.mask]
			head.Store(&node[V]{hash: n.hash, key: n.key, v: n.v, next: head.Load()})
		}
	}
	m.cur.Store(next)
	return next
}

// deleteLocked removes key when its value is *want (any value when want is
// nil) and reports whether it did.
func (m *Map[V]) deleteLocked(key string, want *V) bool {
	h := maphash.String(m.seed, key)
	b := m.cur.Load()
	head := &b.heads[h&b.mask]
	var before []*node[V]
	n := head.Load()
	for n != nil && (n.hash != h || n.key != key) {
		before = append(before, n)
		n = n.next
	}
	if n == nil || (want != nil && n.v != *want) {
		return false
	}
	// Copy the nodes in front of n onto n's successor.
	rest := n.next
	for i := len(before) - 1; i >= 0; i-- {
		p := before[i]
		rest = &node[V]{hash: p.hash, key: p.key, v: p.v, next: rest}
	}
	head.Store(rest)
	m.n--
	return true
}
