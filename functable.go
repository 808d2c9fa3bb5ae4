package faas

import (
	"hash/maphash"
	"iter"
	"maps"
	"sync"
	"sync/atomic"
)

// funcTable maps function IDs to functions for the hot path. Reads take no
// lock and cost the same with ten functions or a hundred thousand: the ID
// picks one of 256 shards, each a copy-on-write Go map behind an atomic
// pointer. A deploy copies one shard, so deploying n functions costs
// O(n²/256) in all, about a second for 100,000. (sync.Map's hash trie gets
// deeper as it grows, which the hot path measurably pays for.)
type funcTable struct {
	seed   maphash.Seed
	shards [funcShards]funcShard
}

const funcShards = 256

type funcShard struct {
	mu sync.Mutex // serializes writers of this shard
	m  atomic.Pointer[map[string]*function]
	_  [40]byte // keep shards on their own cache lines
}

func newFuncTable() *funcTable {
	return &funcTable{seed: maphash.MakeSeed()}
}

func (t *funcTable) shard(id string) *funcShard {
	return &t.shards[maphash.String(t.seed, id)%funcShards]
}

// load returns the function id, or nil.
func (t *funcTable) load(id string) *function {
	if m := t.shard(id).m.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

// store adds or replaces the function fn.id.
func (t *funcTable) store(fn *function) {
	s := t.shard(fn.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]*function{}
	if m := s.m.Load(); m != nil {
		next = maps.Clone(*m)
	}
	next[fn.id] = fn
	s.m.Store(&next)
}

// delete removes the function id.
func (t *funcTable) delete(id string) {
	s := t.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m.Load()
	if m == nil {
		return
	}
	next := maps.Clone(*m)
	delete(next, id)
	s.m.Store(&next)
}

// all iterates over the functions, shard by shard.
func (t *funcTable) all() iter.Seq[*function] {
	return func(yield func(*function) bool) {
		for i := range t.shards {
			m := t.shards[i].m.Load()
			if m == nil {
				continue
			}
			for _, fn := range *m {
				if !yield(fn) {
					return
				}
			}
		}
	}
}
