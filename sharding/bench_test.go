package sharding

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var benchSizes = []int{8, 64, 512, 4096}

// benchKeys is built before the timer starts; its size is a power of two so
// the loop indexes it with a mask.
func benchKeys() []string { return keys(1<<14, "function-") }

func benchTable(n int, weighted bool) *Table {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	nodes := equalNodes(n, "dataplane-")
	if weighted {
		for i := range nodes {
			nodes[i].Weight = 0.5 + r.Float64()*4
		}
	}
	return MustNew(nodes...)
}

var sinkNode Node

func BenchmarkPick(b *testing.B) {
	for _, weighted := range []bool{false, true} {
		for _, n := range benchSizes {
			name := fmt.Sprintf("nodes=%d", n)
			if weighted {
				name = "weighted/" + name
			} else {
				name = "uniform/" + name
			}
			b.Run(name, func(b *testing.B) {
				tab, ks := benchTable(n, weighted), benchKeys()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					sinkNode, _ = tab.Pick(ks[i&(len(ks)-1)])
				}
			})
		}
	}
}

func BenchmarkRank3(b *testing.B) {
	for _, weighted := range []bool{false, true} {
		for _, n := range benchSizes {
			kind := "uniform"
			if weighted {
				kind = "weighted"
			}
			b.Run(fmt.Sprintf("%s/nodes=%d", kind, n), func(b *testing.B) {
				tab, ks := benchTable(n, weighted), benchKeys()
				dst := make([]Node, 0, 3)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					dst = tab.Rank(ks[i&(len(ks)-1)], 3, dst[:0])
				}
				sinkNode = dst[0]
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			tab, ks := benchTable(n, false), benchKeys()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var local Node
				for i := 0; pb.Next(); i++ {
					local, _ = tab.Pick(ks[i&(len(ks)-1)])
				}
				_ = local
			})
		})
	}
}
