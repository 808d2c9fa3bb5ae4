package sharding

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func equalNodes(n int, prefix string) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{ID: fmt.Sprintf("%s%d", prefix, i), Weight: 1}
	}
	return nodes
}

func keys(n int, prefix string) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return ks
}

func TestNewRejectsInvalidNodes(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		want  error
	}{
		{"empty ID", []Node{{ID: "", Weight: 1}}, ErrEmptyID},
		{"duplicate ID", []Node{{ID: "a", Weight: 1}, {ID: "a", Weight: 2}}, ErrDuplicateID},
		{"zero weight", []Node{{ID: "a", Weight: 0}}, ErrInvalidWeight},
		{"negative weight", []Node{{ID: "a", Weight: -1}}, ErrInvalidWeight},
		{"NaN weight", []Node{{ID: "a", Weight: math.NaN()}}, ErrInvalidWeight},
		{"+Inf weight", []Node{{ID: "a", Weight: math.Inf(1)}}, ErrInvalidWeight},
		{"-Inf weight", []Node{{ID: "a", Weight: math.Inf(-1)}}, ErrInvalidWeight},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := New(tt.nodes...)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, tab)
		})
	}
}

func TestChangesRejectInvalidInput(t *testing.T) {
	tab := MustNew(Node{ID: "a", Weight: 1})
	_, err := tab.Add(Node{ID: "a", Weight: 1})
	assert.ErrorIs(t, err, ErrDuplicateID)
	_, err = tab.Add(Node{ID: "b", Weight: math.NaN()})
	assert.ErrorIs(t, err, ErrInvalidWeight)
	_, err = tab.Remove("zz")
	assert.ErrorIs(t, err, ErrUnknownNode)
	_, err = tab.Reweight("zz", 1)
	assert.ErrorIs(t, err, ErrUnknownNode)
	_, err = tab.Reweight("a", 0)
	assert.ErrorIs(t, err, ErrInvalidWeight)
	assert.Panics(t, func() { MustNew(Node{}) })
}

func TestEmptyTable(t *testing.T) {
	tab := MustNew()
	_, ok := tab.Pick("k")
	assert.False(t, ok)
	_, ok = tab.PickAvailable("k", func(Node) bool { return false })
	assert.False(t, ok)
	assert.Empty(t, tab.Rank("k", 3, nil))
}

func TestTableIsImmutable(t *testing.T) {
	in := []Node{{ID: "b", Weight: 1}, {ID: "a", Weight: 2}}
	tab := MustNew(in...)
	in[0].ID = "mutated"
	out := tab.Nodes()
	out[0].Weight = 99
	assert.Equal(t, []Node{{ID: "a", Weight: 2}, {ID: "b", Weight: 1}}, tab.Nodes())
	t2, err := tab.Reweight("a", 5)
	require.NoError(t, err)
	n, _ := tab.Node("a")
	assert.Equal(t, 2.0, n.Weight)
	n, _ = t2.Node("a")
	assert.Equal(t, 5.0, n.Weight)
	assert.True(t, tab.Weighted())
}

func TestBalanceEqualWeights(t *testing.T) {
	const nodes, nkeys = 100, 1_000_000
	tab := MustNew(equalNodes(nodes, "node-")...)
	counts := map[string]int{}
	for i := range nkeys {
		n, ok := tab.Pick(fmt.Sprintf("fn-%d", i))
		require.True(t, ok)
		counts[n.ID]++
	}
	require.Len(t, counts, nodes)
	maxc := 0
	for _, c := range counts {
		maxc = max(maxc, c)
	}
	ratio := float64(maxc) / (nkeys / nodes)
	t.Logf("max/mean = %.4f", ratio)
	assert.LessOrEqual(t, ratio, 1.05)
}

func TestBalanceWeighted(t *testing.T) {
	const nkeys = 1_000_000
	tab := MustNew(Node{ID: "small", Weight: 1}, Node{ID: "medium", Weight: 2}, Node{ID: "large", Weight: 4})
	require.True(t, tab.Weighted())
	counts := map[string]int{}
	for i := range nkeys {
		n, _ := tab.Pick(fmt.Sprintf("fn-%d", i))
		counts[n.ID]++
	}
	for id, want := range map[string]float64{"small": 1.0 / 7, "medium": 2.0 / 7, "large": 4.0 / 7} {
		got := float64(counts[id]) / nkeys
		t.Logf("%s: share %.4f want %.4f", id, got, want)
		assert.InEpsilon(t, want, got, 0.02, id)
	}
}

// randomTable builds a table of n nodes with random weights (or equal ones).
func randomTable(r *rand.Rand, n int, weighted bool) *Table {
	nodes := make([]Node, n)
	for i := range nodes {
		w := 1.0
		if weighted {
			w = 0.1 + r.Float64()*10
		}
		nodes[i] = Node{ID: fmt.Sprintf("n%d-%d", i, r.Uint32()), Weight: w}
	}
	return MustNew(nodes...)
}

func owners(tab *Table, ks []string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		n, _ := tab.Pick(k)
		out[i] = n.ID
	}
	return out
}

func TestPropertyAddMovesKeysOnlyToNewNode(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ks := keys(20_000, "k")
	for trial := range 20 {
		n := 1 + r.IntN(30)
		weighted := trial%2 == 1
		tab := randomTable(r, n, weighted)
		added := Node{ID: fmt.Sprintf("added-%d", trial), Weight: 1}
		if weighted {
			added.Weight = 0.1 + r.Float64()*10
		}
		next, err := tab.Add(added)
		require.NoError(t, err)
		before, after := owners(tab, ks), owners(next, ks)
		moved := 0
		for i := range ks {
			if before[i] != after[i] {
				moved++
				require.Equal(t, added.ID, after[i], "key %s moved to a node that was not added", ks[i])
			}
		}
		total := added.Weight
		for _, nd := range tab.Nodes() {
			total += nd.Weight
		}
		want := added.Weight / total // 1/(n+1) for equal weights
		got := float64(moved) / float64(len(ks))
		assert.InDelta(t, want, got, 0.02, "trial %d: moved share", trial)
	}
}

func TestPropertyRemoveMovesOnlyRemovedNodesKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ks := keys(20_000, "k")
	for trial := range 20 {
		tab := randomTable(r, 2+r.IntN(30), trial%2 == 1)
		nodes := tab.Nodes()
		victim := nodes[r.IntN(len(nodes))].ID
		next, err := tab.Remove(victim)
		require.NoError(t, err)
		before, after := owners(tab, ks), owners(next, ks)
		for i := range ks {
			if before[i] != after[i] {
				require.Equal(t, victim, before[i], "key %s moved although its node stayed", ks[i])
			}
			require.NotEqual(t, victim, after[i])
		}
	}
}

func TestPropertyReweightMovesKeysOnlyToOrFromNode(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ks := keys(20_000, "k")
	for trial := range 20 {
		tab := randomTable(r, 2+r.IntN(30), trial%2 == 1)
		nodes := tab.Nodes()
		target := nodes[r.IntN(len(nodes))]
		w := 0.1 + r.Float64()*10
		next, err := tab.Reweight(target.ID, w)
		require.NoError(t, err)
		before, after := owners(tab, ks), owners(next, ks)
		for i := range ks {
			if before[i] == after[i] {
				continue
			}
			if w > target.Weight {
				require.Equal(t, target.ID, after[i], "growing a node moved a key elsewhere")
			} else {
				require.Equal(t, target.ID, before[i], "shrinking a node moved another node's key")
			}
		}
	}
}

func TestPropertyRank(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		tab := randomTable(r, 1+r.IntN(40), trial%2 == 1)
		key := fmt.Sprintf("key-%d", r.Uint64())
		n := 1 + r.IntN(tab.Len()+3)
		list := tab.Rank(key, n, nil)
		require.Len(t, list, min(n, tab.Len()))

		first, ok := tab.Pick(key)
		require.True(t, ok)
		require.Equal(t, first, list[0], "Rank[0] must equal Pick")

		seen := map[string]bool{}
		for _, nd := range list {
			require.False(t, seen[nd.ID], "duplicate %s in rank", nd.ID)
			seen[nd.ID] = true
		}
		if tab.Len() > 1 {
			without, err := tab.Remove(first.ID)
			require.NoError(t, err)
			rest := without.Rank(key, n-1, nil)
			require.True(t, slices.Equal(list[1:], rest[:len(list)-1]), "Rank after removing the first must equal Rank[1:]: %v vs %v", list[1:], rest)
		}
		// A full ranking is a prefix-consistent ordering of every node.
		full := tab.Rank(key, tab.Len(), nil)
		require.Equal(t, list, full[:len(list)])
	}
}

func TestRankAppendsToDst(t *testing.T) {
	tab := MustNew(equalNodes(10, "n")...)
	dst := []Node{{ID: "existing", Weight: 1}}
	got := tab.Rank("k", 3, dst)
	require.Len(t, got, 4)
	assert.Equal(t, "existing", got[0].ID)
	assert.Equal(t, tab.Rank("k", 3, nil), got[1:])
	assert.Equal(t, dst, tab.Rank("k", 0, dst))
	assert.Equal(t, dst, tab.Rank("k", -1, dst))
}

func TestRankLargeN(t *testing.T) {
	// Beyond the stack scratch size the result must be the same ordering.
	r := rand.New(rand.NewPCG(9, 10))
	for _, weighted := range []bool{false, true} {
		tab := randomTable(r, 100, weighted)
		full := tab.Rank("key", 100, nil)
		require.Len(t, full, 100)
		for i := 1; i < len(full); i++ {
			sub := tab
			for _, nd := range full[:i] {
				var err error
				sub, err = sub.Remove(nd.ID)
				require.NoError(t, err)
			}
			p, _ := sub.Pick("key")
			require.Equal(t, full[i], p, "position %d", i)
		}
	}
}

func TestPickAvailableEqualsPickWithoutOfflineNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 200 {
		tab := randomTable(r, 1+r.IntN(30), trial%2 == 1)
		offline := map[string]bool{}
		sub := tab
		for _, nd := range tab.Nodes() {
			if r.IntN(3) == 0 {
				offline[nd.ID] = true
				var err error
				sub, err = sub.Remove(nd.ID)
				require.NoError(t, err)
			}
		}
		for k := range 50 {
			key := fmt.Sprintf("k%d", k)
			got, gotOK := tab.PickAvailable(key, func(n Node) bool { return offline[n.ID] })
			want, wantOK := sub.Pick(key)
			require.Equal(t, wantOK, gotOK)
			require.Equal(t, want, got)
		}
	}
}

func TestEqualWeightsOtherThanOneMatchUnitWeights(t *testing.T) {
	a := MustNew(equalNodes(20, "n")...)
	nodes := equalNodes(20, "n")
	for i := range nodes {
		nodes[i].Weight = 3.5
	}
	b := MustNew(nodes...)
	assert.False(t, b.Weighted())
	ks := keys(1000, "k")
	assert.Equal(t, owners(a, ks), owners(b, ks))
}

func TestWeightedPathAgreesWithUniformOnEqualWeights(t *testing.T) {
	// Force the weighted code path on an equal-weight table: the order by
	// -ln(u)/w must be the order by hash, so both paths agree.
	tab := MustNew(equalNodes(50, "n")...)
	forced := *tab
	forced.uniform = false
	for _, k := range keys(5000, "k") {
		a, _ := tab.Pick(k)
		b, _ := forced.Pick(k)
		require.Equal(t, a, b, k)
		require.Equal(t, tab.Rank(k, 5, nil), forced.Rank(k, 5, nil), k)
	}
}

func TestHashBytesMatchesHash(t *testing.T) {
	assert.Equal(t, Hash("function-42"), HashBytes([]byte("function-42")))
	tab := MustNew(equalNodes(8, "n")...)
	a, _ := tab.Pick("function-42")
	b, _ := tab.PickHash(HashBytes([]byte("function-42")))
	assert.Equal(t, a, b)
	assert.Equal(t, tab.Rank("function-42", 3, nil), tab.RankHash(Hash("function-42"), 3, nil))
}

func TestErrorMessagesNameTheNode(t *testing.T) {
	_, err := New(Node{ID: "a", Weight: 1}, Node{ID: "b", Weight: -2})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"b"`)
	assert.Contains(t, err.Error(), "-2")
	assert.True(t, errors.Is(err, ErrInvalidWeight))
}

func TestNodeLookup(t *testing.T) {
	tab := MustNew(Node{ID: "x", Weight: 2})
	n, ok := tab.Node("x")
	assert.True(t, ok)
	assert.Equal(t, Node{ID: "x", Weight: 2}, n)
	_, ok = tab.Node("y")
	assert.False(t, ok)
	assert.Equal(t, 1, tab.Len())
}

func TestSortedNodes(t *testing.T) {
	tab := MustNew(Node{ID: "c", Weight: 1}, Node{ID: "a", Weight: 1}, Node{ID: "b", Weight: 1})
	ids := []string{}
	for _, n := range tab.Nodes() {
		ids = append(ids, n.ID)
	}
	assert.True(t, slices.IsSorted(ids))
}

func TestFastWeightedPickEqualsExactPick(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for trial := range 300 {
		n := 1 + r.IntN(200)
		nodes := make([]Node, n)
		for i := range nodes {
			// Include heavy skew and near-equal weights.
			w := []float64{1, 1 + 1e-12, 0.001, 1000, 0.1 + r.Float64()*10}[r.IntN(5)]
			nodes[i] = Node{ID: fmt.Sprintf("n%d", i), Weight: w}
		}
		tab := MustNew(nodes...)
		if !tab.Weighted() {
			continue
		}
		for k := range 200 {
			kh := r.Uint64()
			if k%2 == 0 {
				kh = Hash(fmt.Sprintf("t%d-k%d", trial, k))
			}
			require.Equal(t, tab.pickWeighted(kh, nil), tab.pickWeightedFast(kh), "trial %d key %#x", trial, kh)
		}
	}
}

func TestCostBoundsEnclosePreciseCost(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for range 100_000 {
		u := unit(r.Uint64())
		invW := 0.01 + r.Float64()*100
		lo, hi := costBounds(1-u, invW)
		c := cost(u, invW)
		require.LessOrEqual(t, lo, c*(1+1e-12), "u=%v", u)
		require.GreaterOrEqual(t, hi, c*(1-1e-12), "u=%v", u)
	}
}
