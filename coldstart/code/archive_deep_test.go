package code

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExtractDepthLimit: a name of MaxDepth elements is extracted, one
// more is refused with ErrTooDeep before anything is written for it.
func TestExtractDepthLimit(t *testing.T) {
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, deepTarGz(t, 3, DefaultMaxDepth), dst, Limits{})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dst, strings.Repeat("d/", DefaultMaxDepth-1)+"f2"))
	require.NoError(t, err)

	dst, _ = pkgSandbox(t)
	_, err = extractBytes(t, deepTarGz(t, 3, DefaultMaxDepth+1), dst, Limits{})
	require.ErrorIs(t, err, errTooDeep)
	require.ErrorIs(t, err, ErrBadPackage)
	require.ErrorContains(t, err, "65 path elements, limit 64")
	require.Empty(t, pkgTree(t, dst))

	dst, _ = pkgSandbox(t)
	_, err = extractBytes(t, deepTarGz(t, 1, 200), dst, Limits{MaxDepth: 200})
	require.NoError(t, err, "a raised limit")
}

// TestExtractCountsImpliedDirectories: the parents an entry implies count
// against MaxFiles (else a deep name makes 63 inodes of one entry), once:
// an entry that names an implied directory later is not counted twice.
func TestExtractCountsImpliedDirectories(t *testing.T) {
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t, pkgEntry{Name: "a/b/c/f", Body: "x"}), dst, Limits{MaxFiles: 3})
	require.ErrorIs(t, err, errTooManyFiles)

	dst, _ = pkgSandbox(t)
	st, err := extractBytes(t, pkgTarGz(t,
		pkgEntry{Name: "a/b/f", Body: "x"},
		pkgEntry{Name: "a/", Type: tar.TypeDir},
		pkgEntry{Name: "a/b/", Type: tar.TypeDir},
	), dst, Limits{MaxFiles: 3})
	require.NoError(t, err)
	require.Equal(t, 3, st.Entries)
}

// TestExtractCostDoesNotGrowWithDepth is the regression test of the
// nesting attack, measured in allocations (deterministic, unlike time):
// every path operation on an os.Root walks and allocates per element, so
// when each entry was created by its full path from the root, an entry 64
// deep cost about nine times one at the top. With the directories' handles
// kept open an entry costs the same at any depth.
func TestExtractCostDoesNotGrowWithDepth(t *testing.T) {
	const files = 200
	perFile := func(depth int) float64 {
		pkg := deepTarGz(t, files, depth)
		work := t.TempDir()
		i := 0
		allocs := testing.AllocsPerRun(3, func() {
			i++
			dst := filepath.Join(work, strconv.Itoa(i))
			require.NoError(t, os.Mkdir(dst, 0o755))
			_, err := extractBytes(t, pkg, dst, Limits{})
			require.NoError(t, err)
		})
		return allocs / files
	}
	shallow, deep := perFile(1), perFile(DefaultMaxDepth)
	t.Logf("allocations per entry: %.1f at depth 1, %.1f at depth %d", shallow, deep, DefaultMaxDepth)
	require.Less(t, deep, 2*shallow, "an entry 64 deep costs much more than one at the top")
}

// TestExtractManyDirectoriesRoundRobin visits more directories than the
// handle cache holds, in an order that defeats it (every entry in another
// branch), with hard links across branches: the tree is still exact.
func TestExtractManyDirectoriesRoundRobin(t *testing.T) {
	const branches = 300
	var entries []pkgEntry
	var want []string
	for pass := range 2 {
		for b := range branches {
			dir := fmt.Sprintf("b%03d/x/y", b)
			name := fmt.Sprintf("%s/f%d", dir, pass)
			entries = append(entries, pkgEntry{Name: name, Body: name})
			want = append(want, name)
			if pass == 0 {
				want = append(want, fmt.Sprintf("b%03d/", b), fmt.Sprintf("b%03d/x/", b), dir+"/")
			}
		}
	}
	entries = append(entries, pkgEntry{Name: "b007/x/h", Type: tar.TypeLink, Linkname: "b123/x/y/f1"})
	want = append(want, "b007/x/h")
	for name, archive := range map[string][]byte{
		"tar.gz": pkgTarGz(t, entries...),
		"zip":    pkgZip(t, zip.Store, entries[:len(entries)-1]...),
	} {
		t.Run(name, func(t *testing.T) {
			dst, base := pkgSandbox(t)
			_, err := extractBytes(t, archive, dst, Limits{})
			require.NoError(t, err)
			got := pkgTree(t, dst)
			if name == "zip" {
				require.Len(t, got, len(want)-1)
			} else {
				require.ElementsMatch(t, want, got)
				b, err := os.ReadFile(filepath.Join(dst, "b007/x/h"))
				require.NoError(t, err)
				require.Equal(t, "b123/x/y/f1", string(b))
			}
			pkgAssertContained(t, base)
		})
	}
}

// TestExtractDeepAttackRefusedAtOnce: the package that used to take half
// a minute (thousands of entries 2,000 directories deep) is refused at its
// first entry.
func TestExtractDeepAttackRefusedAtOnce(t *testing.T) {
	pkg := deepTarGz(t, 1000, 2000)
	dst, _ := pkgSandbox(t)
	st, err := extract(context.Background(), bytes.NewReader(pkg), int64(len(pkg)), dst, Limits{})
	require.ErrorIs(t, err, errTooDeep)
	require.Zero(t, st.Entries)
	require.Empty(t, pkgTree(t, dst))
}
