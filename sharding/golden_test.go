package sharding

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The mapping is part of the package's contract: a change here moves keys
// between nodes for every user that upgrades. These vectors were produced by
// the first release and must never change.

func TestGoldenRanks(t *testing.T) {
	uniform := MustNew(Node{"node-a", 1}, Node{"node-b", 1}, Node{"node-c", 1}, Node{"node-d", 1}, Node{"node-e", 1})
	weighted := MustNew(Node{"node-a", 1}, Node{"node-b", 2}, Node{"node-c", 4}, Node{"node-d", 0.5}, Node{"node-e", 3})
	golden := []struct {
		key      string
		hash     uint64
		uniform  []string
		weighted []string
	}{
		{"", 0xef46db3751d8e999, []string{"node-a", "node-c", "node-d", "node-b", "node-e"}, []string{"node-c", "node-a", "node-b", "node-e", "node-d"}},
		{"hello", 0x26c7827d889f6da3, []string{"node-a", "node-c", "node-d", "node-b", "node-e"}, []string{"node-a", "node-c", "node-b", "node-e", "node-d"}},
		{"fn-0", 0x58a7005b8b105f36, []string{"node-d", "node-b", "node-a", "node-e", "node-c"}, []string{"node-d", "node-c", "node-e", "node-b", "node-a"}},
		{"fn-1", 0x78010ae9941328b6, []string{"node-c", "node-d", "node-e", "node-a", "node-b"}, []string{"node-c", "node-e", "node-b", "node-a", "node-d"}},
		{"fn-2", 0x57188195b55335e0, []string{"node-d", "node-a", "node-c", "node-b", "node-e"}, []string{"node-c", "node-a", "node-e", "node-d", "node-b"}},
		{"function/orders/resize-image", 0x6216bf2dc330c9ff, []string{"node-a", "node-d", "node-b", "node-e", "node-c"}, []string{"node-a", "node-b", "node-e", "node-c", "node-d"}},
		{"x", 0x5c80c09683041123, []string{"node-d", "node-b", "node-a", "node-e", "node-c"}, []string{"node-d", "node-b", "node-e", "node-a", "node-c"}},
		{"日本語", 0x7179a19f3719f5e1, []string{"node-d", "node-e", "node-c", "node-a", "node-b"}, []string{"node-d", "node-c", "node-e", "node-b", "node-a"}},
	}
	ids := func(ns []Node) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.ID
		}
		return out
	}
	for _, g := range golden {
		assert.Equal(t, g.hash, Hash(g.key), "hash of %q", g.key)
		assert.Equal(t, g.uniform, ids(uniform.Rank(g.key, 5, nil)), "uniform rank of %q", g.key)
		assert.Equal(t, g.weighted, ids(weighted.Rank(g.key, 5, nil)), "weighted rank of %q", g.key)
	}
}

func TestGoldenMixAndLog(t *testing.T) {
	golden := []struct{ in, mixed, lnBits uint64 }{
		{0x0, 0x0, 0xc0425e4f7b2737fa},
		{0x1, 0x5692161d100b05e5, 0xc0425e4f7b2737fa},
		{0x26c7827d889f6da3, 0xe1053773233f6df3, 0xbffe3256f145b7c1},
		{0x8000000000000000, 0x25c26ea579cea98a, 0xbfe62e42fefa39ed},
		{0xffffffffffffffff, 0xb4d055fcf2cbbd7b, 0xbca0000000000000},
		{0x123456789abcdef, 0xb2c058e4ebb5112c, 0xc015aa16394d4834},
	}
	for _, g := range golden {
		assert.Equal(t, g.mixed, mix(g.in), "mix(%#x)", g.in)
		assert.Equal(t, g.lnBits, math.Float64bits(ln(unit(g.in))), "ln(unit(%#x))", g.in)
	}
}
