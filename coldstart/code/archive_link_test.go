package code

import (
	"archive/tar"
	"archive/zip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExtractKeepsLinksThatResolveInside: links through links, links that
// climb, links written before what they name; all resolve inside the
// package, so all are kept, as tar and as zip.
func TestExtractKeepsLinksThatResolveInside(t *testing.T) {
	entries := []pkgEntry{
		{Name: "bin/tool", Type: tar.TypeSymlink, Linkname: "../lib/tool"}, // before lib/ exists
		{Name: "lib/libfoo.so", Type: tar.TypeSymlink, Linkname: "libfoo.so.1"},
		{Name: "lib/libfoo.so.1", Type: tar.TypeSymlink, Linkname: "libfoo.so.1.2"},
		{Name: "lib/libfoo.so.1.2", Body: "elf"},
		{Name: "lib/tool", Body: "#!/bin/sh\n", Mode: 0o755},
		{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."}, // the root itself
		{Name: "cur", Type: tar.TypeSymlink, Linkname: "lib"},
		{Name: "up", Type: tar.TypeSymlink, Linkname: "cur/../bin/tool"}, // lib/.., not ./..
		{Name: "round", Type: tar.TypeSymlink, Linkname: "d/l/d/l/lib/libfoo.so"},
		{Name: "later", Type: tar.TypeSymlink, Linkname: "m/../lib"}, // m comes next
		{Name: "m/", Type: tar.TypeDir},
		{Name: "dangling", Type: tar.TypeSymlink, Linkname: "nowhere/at/all"},
	}
	reads := map[string]string{
		"bin/tool": "#!/bin/sh\n", "lib/libfoo.so": "elf", "up": "#!/bin/sh\n",
		"round": "elf", "later/libfoo.so.1.2": "elf", "d/l/d/l/cur/tool": "#!/bin/sh\n",
	}
	for name, archive := range map[string][]byte{
		"tar.gz": pkgTarGz(t, entries...),
		"zip":    pkgZip(t, zip.Deflate, entries...),
	} {
		t.Run(name, func(t *testing.T) {
			dst, base := pkgSandbox(t)
			st, err := extractBytes(t, archive, dst, Limits{})
			require.NoError(t, err)
			require.Equal(t, len(entries), st.Entries)
			for p, want := range reads {
				b, err := os.ReadFile(filepath.Join(dst, p))
				require.NoError(t, err, p)
				require.Equal(t, want, string(b), p)
			}
			pkgAssertLinksInside(t, dst)
			pkgAssertContained(t, base)
		})
	}
}

// TestExtractRemovesALinkFoundToEscapeAtTheEnd: a link that only escapes
// once a later entry exists is found when the tree is complete, refused,
// and removed, so the partial tree the caller removes holds no way out.
func TestExtractRemovesALinkFoundToEscapeAtTheEnd(t *testing.T) {
	dst, base := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t,
		pkgEntry{Name: "x", Type: tar.TypeSymlink, Linkname: "m/../outside"},
		pkgEntry{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
		pkgEntry{Name: "m", Type: tar.TypeSymlink, Linkname: "d/l"},
	), dst, Limits{})
	require.ErrorIs(t, err, errUnsafeLink)
	require.ErrorContains(t, err, `entry "x"`)
	_, statErr := os.Lstat(filepath.Join(dst, "x"))
	require.True(t, os.IsNotExist(statErr), "the escaping link is removed")
	require.Equal(t, []string{"d/", "d/l -> ..", "m -> d/l"}, pkgTree(t, dst))
	pkgAssertLinksInside(t, dst)
	pkgAssertContained(t, base)
}

// TestExtractRefusesWhatIsAlreadyOnDisk: the checks run against what the
// package wrote, so a path that exists on disk without the package having
// written it (dst not empty; or a case-insensitive file system, where
// "Lib" is "lib") is a conflict, not something to write into.
func TestExtractRefusesWhatIsAlreadyOnDisk(t *testing.T) {
	dst, base := pkgSandbox(t)
	require.NoError(t, os.Symlink(filepath.Join(base, "outside"), filepath.Join(dst, "lib")))
	require.NoError(t, os.Mkdir(filepath.Join(dst, "bin"), 0o755))
	for _, e := range []pkgEntry{
		{Name: "lib/x", Body: "x"},
		{Name: "lib/", Type: tar.TypeDir},
		{Name: "bin/x", Body: "x"},
		{Name: "lib", Body: "x"},
		{Name: "lib", Type: tar.TypeSymlink, Linkname: "bin"},
	} {
		_, err := extractBytes(t, pkgTarGz(t, e), dst, Limits{})
		require.ErrorIs(t, err, errDuplicateEntry, e.Name)
	}
	pkgAssertContained(t, base)
	require.Empty(t, pkgTree(t, filepath.Join(base, "outside")))
}
