package code

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDirHandlesBounded writes into more directories than the handle cache
// holds, deep and in an order that defeats it: the cache never holds more
// than maxOpenDirs handles, its list stays consistent, and close releases
// every one.
func TestDirHandlesBounded(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	require.NoError(t, err)
	w := newTreeWriter(context.Background(), root, Limits{}.withDefaults(), 1<<30)
	check := func() {
		t.Helper()
		n := 0
		var prev *node
		for c := w.lru.head; c != nil; c = c.next {
			require.NotNil(t, c.handle)
			require.Same(t, prev, c.prev)
			prev, n = c, n+1
		}
		require.Same(t, prev, w.lru.tail)
		require.Equal(t, w.lru.n, n)
		require.LessOrEqual(t, n, maxOpenDirs)
	}
	for pass := range 3 {
		for b := range 150 {
			name := fmt.Sprintf("b%d/%sf%d", b, strings.Repeat("d/", 10), pass)
			require.NoError(t, w.file(name, 0o644, strings.NewReader("x")))
			check()
		}
	}
	require.Equal(t, maxOpenDirs, w.lru.n)
	var open []*node
	var walk func(*node)
	walk = func(n *node) {
		if n.handle != nil && n != w.tree {
			open = append(open, n)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	w.close()
	walk(w.tree)
	require.Empty(t, open, "handles left open after close")
}
