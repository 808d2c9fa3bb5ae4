package sharding

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Errors returned when a table is built or changed. They are wrapped in a
// message naming the offending node; test for them with errors.Is.
var (
	// ErrEmptyID reports a node whose ID is the empty string.
	ErrEmptyID = errors.New("sharding: empty node ID")
	// ErrDuplicateID reports two nodes with the same ID.
	ErrDuplicateID = errors.New("sharding: duplicate node ID")
	// ErrInvalidWeight reports a weight that is not a finite number above zero.
	ErrInvalidWeight = errors.New("sharding: weight must be a finite number > 0")
	// ErrUnknownNode reports a Remove or Reweight of a node not in the table.
	ErrUnknownNode = errors.New("sharding: unknown node")
)

// Node is a member of a [Table]: an ID, unique within the table, and a
// weight. A node's share of keys is its weight divided by the sum of all
// weights.
type Node struct {
	// ID names the node. It is hashed to place the node, so the same ID
	// always scores the same keys the same way.
	ID string
	// Weight is the node's relative capacity; it must be finite and > 0.
	Weight float64
}

// Table is an immutable set of weighted nodes that maps keys to nodes. The
// zero value is not usable; build tables with [New]. All methods are safe for
// concurrent use.
type Table struct {
	// Parallel slices sorted by node ID; the hot loop reads only seeds (and
	// invW for weighted tables), so they are kept apart from the strings.
	nodes   []Node
	seeds   []uint64
	invW    []float64
	uniform bool
}

// New builds a table from nodes. It returns an error wrapping [ErrEmptyID],
// [ErrDuplicateID] or [ErrInvalidWeight] when a node is invalid. An empty
// table is valid; its lookups report no node.
func New(nodes ...Node) (*Table, error) {
	seen := make(map[string]struct{}, len(nodes))
	for i, n := range nodes {
		if err := validate(n); err != nil {
			return nil, fmt.Errorf("node %d (%q): %w", i, n.ID, err)
		}
		if _, dup := seen[n.ID]; dup {
			return nil, fmt.Errorf("node %d (%q): %w", i, n.ID, ErrDuplicateID)
		}
		seen[n.ID] = struct{}{}
	}
	return build(slices.Clone(nodes)), nil
}

// MustNew is like [New] but panics on an error. It is meant for tests and
// for tables built from constants.
func MustNew(nodes ...Node) *Table {
	t, err := New(nodes...)
	if err != nil {
		panic(err)
	}
	return t
}

func validate(n Node) error {
	if n.ID == "" {
		return ErrEmptyID
	}
	if math.IsNaN(n.Weight) || math.IsInf(n.Weight, 0) || n.Weight <= 0 {
		return fmt.Errorf("%w (got %v)", ErrInvalidWeight, n.Weight)
	}
	return nil
}

// build takes ownership of nodes, which must be valid and unique.
func build(nodes []Node) *Table {
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	t := &Table{
		nodes:   nodes,
		seeds:   make([]uint64, len(nodes)),
		invW:    make([]float64, len(nodes)),
		uniform: true,
	}
	for i, n := range nodes {
		t.seeds[i] = nodeSeed(n.ID)
		t.invW[i] = 1 / n.Weight
		if n.Weight != nodes[0].Weight {
			t.uniform = false
		}
	}
	return t
}

// Len returns the number of nodes.
func (t *Table) Len() int { return len(t.nodes) }

// Nodes returns a copy of the table's nodes, sorted by ID.
func (t *Table) Nodes() []Node { return slices.Clone(t.nodes) }

// Weighted reports whether the nodes' weights differ. Tables whose weights
// are all equal take a faster path that computes no logarithm.
func (t *Table) Weighted() bool { return !t.uniform }

// Node returns the node with the given ID.
func (t *Table) Node(id string) (Node, bool) {
	if i, ok := t.index(id); ok {
		return t.nodes[i], true
	}
	return Node{}, false
}

func (t *Table) index(id string) (int, bool) {
	return slices.BinarySearchFunc(t.nodes, id, func(n Node, id string) int { return strings.Compare(n.ID, id) })
}

// Add returns a new table with n added. Keys move only to n.
func (t *Table) Add(n Node) (*Table, error) {
	if err := validate(n); err != nil {
		return nil, fmt.Errorf("add %q: %w", n.ID, err)
	}
	if _, ok := t.index(n.ID); ok {
		return nil, fmt.Errorf("add %q: %w", n.ID, ErrDuplicateID)
	}
	nodes := make([]Node, 0, len(t.nodes)+1)
	nodes = append(append(nodes, t.nodes...), n)
	return build(nodes), nil
}

// Remove returns a new table without the node id. Only that node's keys move.
func (t *Table) Remove(id string) (*Table, error) {
	i, ok := t.index(id)
	if !ok {
		return nil, fmt.Errorf("remove %q: %w", id, ErrUnknownNode)
	}
	nodes := make([]Node, 0, len(t.nodes)-1)
	nodes = append(append(nodes, t.nodes[:i]...), t.nodes[i+1:]...)
	return build(nodes), nil
}

// Reweight returns a new table in which node id has weight w. Keys move only
// to the node (when w grows) or only from it (when w shrinks).
func (t *Table) Reweight(id string, w float64) (*Table, error) {
	i, ok := t.index(id)
	if !ok {
		return nil, fmt.Errorf("reweight %q: %w", id, ErrUnknownNode)
	}
	if err := validate(Node{ID: id, Weight: w}); err != nil {
		return nil, fmt.Errorf("reweight %q: %w", id, err)
	}
	nodes := slices.Clone(t.nodes)
	nodes[i].Weight = w
	return build(nodes), nil
}

// Hash returns the hash of key that [Table.PickHash] and [Table.RankHash]
// take. Callers that look up one key in several tables hash it once.
func Hash(key string) uint64 { return xxhash.Sum64String(key) }

// HashBytes is [Hash] for a key held in a byte slice; it does not allocate.
func HashBytes(key []byte) uint64 { return xxhash.Sum64(key) }

// Pick returns the node that owns key: the first of its preference list. ok
// is false when the table is empty.
func (t *Table) Pick(key string) (n Node, ok bool) {
	return t.PickHash(Hash(key))
}

// PickHash is [Table.Pick] for a key already hashed with [Hash].
func (t *Table) PickHash(kh uint64) (Node, bool) {
	var i int
	if t.uniform {
		i = t.pickUniform(kh)
	} else {
		i = t.pickWeightedFast(kh)
	}
	if i < 0 {
		return Node{}, false
	}
	return t.nodes[i], true
}

// PickAvailable returns the highest-ranked node of key for which offline
// returns false. The result equals Pick on the table without the offline
// nodes, so marking a node offline moves only that node's keys. ok is false
// when every node is offline. offline must not block; it is called once per
// node.
func (t *Table) PickAvailable(key string, offline func(Node) bool) (Node, bool) {
	i := t.pickWeighted(Hash(key), offline)
	if i < 0 {
		return Node{}, false
	}
	return t.nodes[i], true
}

func (t *Table) pickUniform(kh uint64) int {
	seeds := t.seeds
	if len(seeds) == 0 {
		return -1
	}
	// Nodes are sorted by ID, so keeping the first of equal hashes breaks
	// ties by ID without reading the strings, and the bodies compile to
	// conditional moves: no mispredicted branch when a new maximum appears.
	// Two running maxima (even and odd positions) halve the length of the
	// compare-and-move dependency chain, so the mixes of successive nodes
	// overlap in the pipeline.
	a, aH := 0, mix(kh^seeds[0])
	b, bH := 0, uint64(0)
	i := 1
	if len(seeds) > 1 {
		b, bH = 1, mix(kh^seeds[1])
		i = 2
	}
	for ; i+1 < len(seeds); i += 2 {
		h0 := mix(kh ^ seeds[i])
		h1 := mix(kh ^ seeds[i+1])
		if h0 > aH {
			a, aH = i, h0
		}
		if h1 > bH {
			b, bH = i+1, h1
		}
	}
	if i < len(seeds) {
		if h := mix(kh ^ seeds[i]); h > aH || (h == aH && i < a) {
			a, aH = i, h
		}
	}
	if bH > aH || (bH == aH && b < a) {
		return b
	}
	return a
}

// pickWeightedFast is pickWeighted without the offline predicate, for the
// hot path of weighted tables. It returns the same node while computing
// almost no logarithms: with x = 1-u, the series -ln(u) = x + x²/2 + x³/3 +
// ... gives cheap lower and upper bounds on each node's cost, and the exact
// cost is computed only when the bounds of the candidate and the current best
// overlap, that is, for near ties. relMargin exceeds the rounding error of
// every bound and of ln by six orders of magnitude, so a decision taken on
// bounds is the decision the exact costs would take.
func (t *Table) pickWeightedFast(kh uint64) int {
	seeds, invW := t.seeds, t.invW
	if len(seeds) == 0 {
		return -1
	}
	invW = invW[:len(seeds)]
	h := mix(kh ^ seeds[0])
	u := unit(h)
	best, bestH, bestU := 0, h, u
	bestLo, bestHi := costBounds(1-u, invW[0])
	bestC, exact := 0.0, false
	limit := bestHi * (1 + relMargin)
	for i := 1; i < len(seeds); i++ {
		h := mix(kh ^ seeds[i])
		u := unit(h)
		x := 1 - u
		// x/w <= cost: most nodes lose on this first-order bound alone.
		if float64(x*invW[i]) > limit {
			continue
		}
		lo, hi := costBounds(x, invW[i])
		switch {
		case lo > limit:
			continue
		case float64(hi*(1+relMargin)) < bestLo:
			best, bestH, bestU, exact = i, h, u, false
		default:
			if !exact {
				bestC, exact = cost(bestU, invW[best]), true
			}
			c := cost(u, invW[i])
			if !(score{c: c, h: h}).beats(score{c: bestC, h: bestH}, i, best) {
				continue
			}
			best, bestH, bestU, bestC = i, h, u, c
		}
		bestLo, bestHi = lo, hi
		limit = bestHi * (1 + relMargin)
	}
	return best
}

// relMargin is the relative slack applied to cost bounds before deciding on
// them.
const relMargin = 1e-9

// costBounds returns lower and upper bounds on -ln(1-x)/w, given x in (0,1]
// and 1/w: x + x²/2 + x³/3 below, and x + x²/2 + x³/(3(1-x)) above (the
// series' tail bounded by a geometric series). The upper bound is +Inf when
// x rounds to 1.
func costBounds(x, invW float64) (lo, hi float64) {
	x2 := float64(x * x)
	x3 := float64(x2 * x)
	head := x + float64(x2*0.5)
	lo = float64((head + x3/3) * invW)
	hi = float64((head + x3/float64(3*(1-x))) * invW)
	return lo, hi
}

// pickWeighted is the general pick: it handles uniform tables too (where the
// result equals pickUniform), and skips nodes for which offline is true.
func (t *Table) pickWeighted(kh uint64, offline func(Node) bool) int {
	best := -1
	var bs score
	for i, s := range t.seeds {
		if offline != nil && offline(t.nodes[i]) {
			continue
		}
		h := mix(kh ^ s)
		var sc score
		if t.uniform {
			sc = score{h: h}
		} else {
			u := unit(h)
			// -ln(u) >= 1-u, so (1-u)/w bounds the node's cost from below;
			// when it already exceeds the best cost (with a margin for
			// rounding) the node cannot win and needs no logarithm.
			if best >= 0 && float64((1-u)*t.invW[i]) > bs.c*(1+1e-9) {
				continue
			}
			sc = score{c: cost(u, t.invW[i]), h: h}
		}
		if best < 0 || sc.beats(bs, i, best) {
			best, bs = i, sc
		}
	}
	return best
}

// Rank appends to dst the first n nodes of key's preference list, best
// first, and returns the extended slice. Fewer than n are appended when the
// table has fewer nodes. The first is the node [Table.Pick] returns; the
// list without its first element is the list of the table without that node.
// Rank does not allocate when dst has room for n more nodes and n <= 32.
func (t *Table) Rank(key string, n int, dst []Node) []Node {
	return t.RankHash(Hash(key), n, dst)
}

// maxStackRank is the largest n for which Rank keeps its scratch space on
// the stack. Preference lists are short (replication factors of 2 to 5).
const maxStackRank = 32

type ranked struct {
	i  int
	sc score
}

// RankHash is [Table.Rank] for a key already hashed with [Hash].
func (t *Table) RankHash(kh uint64, n int, dst []Node) []Node {
	n = min(n, len(t.nodes))
	if n <= 0 {
		return dst
	}
	var buf [maxStackRank]ranked
	top := buf[:0]
	if n > maxStackRank {
		top = make([]ranked, 0, n)
	}
	for i, s := range t.seeds {
		h := mix(kh ^ s)
		var sc score
		if t.uniform {
			sc = score{h: h}
		} else {
			u := unit(h)
			if len(top) == n && float64((1-u)*t.invW[i]) > top[n-1].sc.c*(1+1e-9) {
				continue
			}
			sc = score{c: cost(u, t.invW[i]), h: h}
		}
		if len(top) == n && !sc.beats(top[n-1].sc, i, top[n-1].i) {
			continue
		}
		// Insert in order; the list is short, so a linear shift is cheapest.
		j := len(top)
		if j < n {
			top = top[:j+1]
		} else {
			j--
		}
		for j > 0 && sc.beats(top[j-1].sc, i, top[j-1].i) {
			top[j] = top[j-1]
			j--
		}
		top[j] = ranked{i: i, sc: sc}
	}
	for _, r := range top {
		dst = append(dst, t.nodes[r.i])
	}
	return dst
}

// score orders nodes for one key: a lower cost c = -ln(u)/w wins (c is 0 for
// uniform tables), then a higher pair hash, then a smaller ID, so that the
// order is total and identical everywhere.
type score struct {
	c float64
	h uint64
}

// beats reports whether node ai with score a ranks before node bi with
// score b. Nodes are sorted by ID, so the index order is the ID order.
func (a score) beats(b score, ai, bi int) bool {
	if a.c != b.c {
		return a.c < b.c
	}
	if a.h != b.h {
		return a.h > b.h
	}
	return ai < bi
}

// nodeSeed is the per-node hash combined with each key's hash. Hashing with a
// domain prefix keeps a node's seed from equalling a key's hash when a node
// and a key share a name.
func nodeSeed(id string) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString("faasplane/sharding/node\x00")
	_, _ = d.WriteString(id)
	return d.Sum64()
}

// mix is a bijective 64-bit finalizer (splitmix64's, with Stafford's "mix13"
// constants). Every input bit affects every output bit with probability close
// to one half, so XOR-combining a key hash with a node seed and mixing gives
// independent-looking scores per node without hashing the pair in full.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// unit maps a hash to a float64 strictly inside (0, 1): the top 52 bits plus
// one half, scaled by 2^-52. (With 53 bits the largest value would round up
// to exactly 1, whose logarithm is 0.) Every result is exact.
func unit(h uint64) float64 {
	return (float64(h>>12) + 0.5) * (1.0 / (1 << 52))
}

// cost returns -ln(u) / w (given 1/w): a node's cost for a key, the inverse
// of its logarithmic-method score -w/ln(u). The lowest cost wins.
func cost(u, invW float64) float64 {
	return float64(-ln(u) * invW)
}
