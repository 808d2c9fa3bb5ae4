package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// TestTreeCacheSharedByAgents: two agents of a node share a tree
// directory; the second load of a package is a cache hit that neither
// fetches nor unpacks, and gets hard links of read-only files.
func TestTreeCacheSharedByAgents(t *testing.T) {
	trees := t.TempDir()
	a := newHarness(t, func(c *Config) { c.TreeDir = trees })
	b := newHarness(t, func(c *Config) { c.TreeDir = trees })
	pkg := binPackage(t, "hello", helloManifest)

	ra := a.loadReady("hello", "hello", helloManifest, nil)
	require.False(t, ra.CacheHit)
	require.Equal(t, 200, a.mustInvoke("hello", "/").status)

	ref := b.publish("hello.tar.gz", pkg)
	rb, err := b.load("hello", ref, nil)
	require.NoError(t, err)
	require.True(t, rb.CacheHit)
	require.Zero(t, rb.Timings.FetchMillis)
	_, err = b.client.Initialize(context.Background(), b.addr, lifecycle.InitializeRequest{FunctionID: "hello"})
	require.NoError(t, err)
	require.Equal(t, "hello, world\n", b.mustInvoke("hello", "/").body)

	fa, err := os.Stat(filepath.Join(a.agent.Status().Dir, "hello"))
	require.NoError(t, err)
	fb, err := os.Stat(filepath.Join(b.agent.Status().Dir, "hello"))
	require.NoError(t, err)
	require.True(t, os.SameFile(fa, fb), "hard links of one cached file")
	require.Zero(t, fb.Mode().Perm()&0o222, "cached files are read-only")
	require.Equal(t, os.FileMode(0o555), fb.Mode().Perm())

	// Closing an agent removes its links, not the cached tree.
	require.NoError(t, a.agent.Close())
	des, err := os.ReadDir(trees)
	require.NoError(t, err)
	require.Len(t, des, 1)
}

func TestTreeCacheEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	c := &treeCache{dir: dir, max: 2, log: newTestLogger()}
	fill := func(body string) func(context.Context, string) error {
		return func(_ context.Context, into string) error {
			return os.WriteFile(filepath.Join(into, "f"), []byte(body), 0o644)
		}
	}
	digest := func(i int) string { return "sha256:" + strings.Repeat(string(rune('a'+i)), 64) }
	old := time.Now().Add(-time.Hour)
	put := func(i int) {
		dst := t.TempDir()
		hit, err := c.materialize(context.Background(), digest(i), dst, fill(digest(i)))
		require.NoError(t, err)
		require.False(t, hit)
		b, err := os.ReadFile(filepath.Join(dst, "f"))
		require.NoError(t, err)
		require.Equal(t, digest(i), string(b))
	}
	put(0)
	put(1)
	// Tree 0 is older than tree 1, but a hit on it makes tree 1 the least
	// recently used.
	require.NoError(t, os.Chtimes(filepath.Join(dir, digest(0)[7:]), old.Add(-time.Hour), old.Add(-time.Hour)))
	require.NoError(t, os.Chtimes(filepath.Join(dir, digest(1)[7:]), old, old))
	hit, err := c.materialize(context.Background(), digest(0), t.TempDir(), fill("unused"))
	require.NoError(t, err)
	require.True(t, hit)
	put(2)
	var names []string
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, de := range des {
		names = append(names, de.Name()[:1])
	}
	require.ElementsMatch(t, []string{"a", "c"}, names)

	// A stale temporary tree of a dead agent is cleaned up by eviction.
	stale := filepath.Join(dir, tmpPrefix+"123")
	require.NoError(t, os.Mkdir(stale, 0o755))
	require.NoError(t, os.Chtimes(stale, old.Add(-time.Hour), old.Add(-time.Hour)))
	c.evict()
	require.NoDirExists(t, stale)
}

func TestTreeCacheFailedUnpackLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c := &treeCache{dir: dir, max: 2, log: newTestLogger()}
	boom := errors.New("boom")
	_, err := c.materialize(context.Background(), "sha256:"+strings.Repeat("0", 64), t.TempDir(),
		func(_ context.Context, into string) error {
			_ = os.WriteFile(filepath.Join(into, "partial"), []byte("x"), 0o644)
			return boom
		})
	require.ErrorIs(t, err, boom)
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, des)
}

func TestLinkTreeCopiesSymlinksAndDirs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink("a/b/f", filepath.Join(src, "l")))
	require.NoError(t, linkTree(src, dst))
	target, err := os.Readlink(filepath.Join(dst, "l"))
	require.NoError(t, err)
	require.Equal(t, "a/b/f", target)
	b, err := os.ReadFile(filepath.Join(dst, "l"))
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
	// copyFile is the fallback across file systems.
	require.NoError(t, copyFile(filepath.Join(src, "a", "b", "f"), filepath.Join(dst, "copy")))
	fi, err := os.Stat(filepath.Join(dst, "copy"))
	require.NoError(t, err)
	require.EqualValues(t, 1, fi.Sys().(*syscall.Stat_t).Nlink)
}
