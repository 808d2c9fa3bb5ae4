package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// tamperCommand makes a function try to change its own code before it
// starts serving: what a hostile function would do to the copy that the
// next instance of a node gets.
var tamperCommand = []string{"/bin/sh", "-c", "chmod u+w data.txt; echo tampered > data.txt; exec ./hello"}

// tamperPackage is the hello binary with a data file to tamper with.
func tamperPackage(t *testing.T) []byte {
	bin, err := os.ReadFile(filepath.Join(binDir, "hello"))
	require.NoError(t, err)
	return tarGzLevel(t, 0, tarEntry{name: "hello", body: string(bin), mode: 0o755}, tarEntry{name: "data.txt", body: "original\n"})
}

// loadTamperer loads the tampering function on h from its origin and
// initializes it.
func loadTamperer(t *testing.T, h *harness, pkg []byte) lifecycle.LoadResponse {
	t.Helper()
	lr, err := h.load("tamper", h.publish("tamper.tar.gz", pkg), func(r *lifecycle.LoadRequest) {
		r.Command, r.Args = tamperCommand[0], tamperCommand[1:]
	})
	require.NoError(t, err)
	_, err = h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "tamper"})
	require.NoError(t, err)
	return lr
}

func readData(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data.txt"))
	require.NoError(t, err)
	return string(b)
}

// TestTreeCacheSharedByAgents: two agents of a node share a tree
// directory; the second load of a package is a cache hit that neither
// fetches nor unpacks. Functions run as the agent's user, so each instance
// gets a copy: a function that rewrites its code changes its own copy
// only, never the cached tree nor the next instance's code.
func TestTreeCacheSharedByAgents(t *testing.T) {
	trees := t.TempDir()
	a := newHarness(t, func(c *Config) { c.TreeDir = trees })
	b := newHarness(t, func(c *Config) { c.TreeDir = trees })
	pkg := tamperPackage(t)

	ra := loadTamperer(t, a, pkg)
	require.False(t, ra.CacheHit)
	require.Equal(t, 200, a.mustInvoke("tamper", "/").status)
	require.Equal(t, "tampered\n", readData(t, a.agent.Status().Dir), "the function could change its own copy")

	rb := loadTamperer(t, b, pkg)
	require.True(t, rb.CacheHit)
	require.Zero(t, rb.Timings.FetchMillis)
	require.Equal(t, "hello, world\n", b.mustInvoke("tamper", "/").body)
	cached := filepath.Join(trees, strings.TrimPrefix(code.DigestOf(pkg), "sha256:"))
	require.Equal(t, "original\n", readData(t, cached), "the cached tree is untouched")

	fa, err := os.Stat(filepath.Join(a.agent.Status().Dir, "hello"))
	require.NoError(t, err)
	fc, err := os.Stat(filepath.Join(cached, "hello"))
	require.NoError(t, err)
	require.False(t, os.SameFile(fa, fc), "a copy, not a link of the cached file")
	require.Zero(t, fc.Mode().Perm()&0o222, "cached files are read-only")
	require.Equal(t, os.FileMode(0o555), fc.Mode().Perm())

	// Closing an agent removes its copy, not the cached tree.
	require.NoError(t, a.agent.Close())
	des, err := os.ReadDir(trees)
	require.NoError(t, err)
	require.Len(t, des, 1)
}

// TestTreeCacheLinksForAnotherUser: with RunAs, functions run as another
// user than the owner of the cached files, so the cache shares them by hard
// links; the function can neither make them writable nor write them. It
// needs root, as .ci/run has; without root, RunAs is refused.
func TestTreeCacheLinksForAnotherUser(t *testing.T) {
	nobody := &RunAs{UID: 65534, GID: 65534}
	if os.Geteuid() != 0 {
		_, err := New(Config{Store: code.StoreFunc(nil), WorkDir: t.TempDir(), Runtime: "go", ControlToken: lifecycle.NewControlToken(), RunAs: nobody})
		require.ErrorContains(t, err, "needs an agent running as root")
		return
	}
	// The function's user must be able to reach its work directory.
	base, err := os.MkdirTemp("", "faas-runas-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	trees := filepath.Join(base, "trees")
	edit := func(work string) func(*Config) {
		return func(c *Config) { c.TreeDir, c.WorkDir, c.RunAs = trees, filepath.Join(base, work), nobody }
	}
	a := newHarness(t, edit("a"))
	b := newHarness(t, edit("b"))
	pkg := tamperPackage(t)

	require.False(t, loadTamperer(t, a, pkg).CacheHit)
	require.True(t, loadTamperer(t, b, pkg).CacheHit)
	for _, h := range []*harness{a, b} {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.agent.Status().PID))
		require.NoError(t, err)
		require.Regexp(t, `(?m)^Uid:\s+65534\s`, string(status), "the function runs as nobody")
		require.Equal(t, 200, h.mustInvoke("tamper", "/").status)
		require.Equal(t, "original\n", readData(t, h.agent.Status().Dir), "the function could not write its code")
	}
	fa, err := os.Stat(filepath.Join(a.agent.Status().Dir, "data.txt"))
	require.NoError(t, err)
	fb, err := os.Stat(filepath.Join(b.agent.Status().Dir, "data.txt"))
	require.NoError(t, err)
	require.True(t, os.SameFile(fa, fb), "hard links of one cached file")
	require.Zero(t, fb.Mode().Perm()&0o222)
	require.EqualValues(t, 0, fb.Sys().(*syscall.Stat_t).Uid, "owned by the agent's user")
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

func TestCopyTreeCopiesSymlinksAndDirs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink("a/b/f", filepath.Join(src, "l")))
	require.NoError(t, copyTree(src, dst, true))
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
