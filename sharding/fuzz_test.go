package sharding

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// FuzzTable builds tables from arbitrary node specs and checks the package's
// invariants for an arbitrary key: construction either fails with a typed
// error or succeeds; Pick equals Rank[0]; Rank has no duplicates; removing
// the owner hands the key to the second of its list.
func FuzzTable(f *testing.F) {
	f.Add("a,b,c", "1,2,4", "key")
	f.Add("", "", "")
	f.Add("a,a", "1,1", "k")
	f.Add("x,y", "0,-1", "k")
	f.Add("n1,n2,n3,n4", "1,1,1,1", "日本語")
	f.Fuzz(func(t *testing.T, idList, weightList, key string) {
		ids := strings.Split(idList, ",")
		if idList == "" {
			ids = nil
		}
		ws := strings.Split(weightList, ",")
		nodes := make([]Node, 0, len(ids))
		for i, id := range ids {
			w := 1.0
			if i < len(ws) && ws[i] != "" {
				// Derive a weight from the text, including invalid ones.
				w = float64(len(ws[i])) - 1
				switch ws[i] {
				case "nan":
					w = math.NaN()
				case "inf":
					w = math.Inf(1)
				}
			}
			nodes = append(nodes, Node{ID: id, Weight: w})
		}
		tab, err := New(nodes...)
		if err != nil {
			if !errors.Is(err, ErrEmptyID) && !errors.Is(err, ErrDuplicateID) && !errors.Is(err, ErrInvalidWeight) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		p, ok := tab.Pick(key)
		if ok != (tab.Len() > 0) {
			t.Fatalf("Pick ok=%v on %d nodes", ok, tab.Len())
		}
		list := tab.Rank(key, tab.Len(), nil)
		if len(list) != tab.Len() {
			t.Fatalf("Rank returned %d of %d nodes", len(list), tab.Len())
		}
		if !ok {
			return
		}
		if list[0] != p {
			t.Fatalf("Rank[0]=%v Pick=%v", list[0], p)
		}
		seen := map[string]bool{}
		for _, n := range list {
			if seen[n.ID] {
				t.Fatalf("duplicate %q", n.ID)
			}
			seen[n.ID] = true
		}
		if tab.Len() > 1 {
			rest, err := tab.Remove(p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if q, _ := rest.Pick(key); q != list[1] {
				t.Fatalf("after removing owner got %v want %v", q, list[1])
			}
		}
	})
}
