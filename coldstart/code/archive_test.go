package code

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func extractBytes(t testing.TB, archive []byte, dst string, lim Limits) (extractStats, error) {
	t.Helper()
	return extract(context.Background(), bytes.NewReader(archive), int64(len(archive)), dst, lim)
}

var goodEntries = []pkgEntry{
	{Name: "./", Type: tar.TypeDir},
	{Name: "bin/", Type: tar.TypeDir},
	{Name: "bin/server", Body: "#!/bin/sh\necho hi\n", Mode: 0o4777}, // setuid and o+w dropped
	{Name: "faas.json", Body: `{"command":"bin/server"}`},
	{Name: "lib/deep/data.txt", Body: "data"}, // parent directories not listed
	{Name: "lib/current", Type: tar.TypeSymlink, Linkname: "deep"},
	{Name: "lib/up", Type: tar.TypeSymlink, Linkname: "../bin/server"},
}

func TestExtractTarGzGood(t *testing.T) {
	entries := append(goodEntries, pkgEntry{Name: "bin/alias", Type: tar.TypeLink, Linkname: "bin/server"})
	dst, base := pkgSandbox(t)
	st, err := extractBytes(t, pkgTarGz(t, entries...), dst, Limits{})
	require.NoError(t, err)
	require.Equal(t, formatTarGz, st.format)
	require.Equal(t, 7, st.Entries) // "./" is not an entry of its own
	require.Equal(t, int64(len("#!/bin/sh\necho hi\n")+len(`{"command":"bin/server"}`)+4), st.Bytes)
	require.Equal(t, []string{
		"bin/", "bin/alias", "bin/server", "faas.json",
		"lib/", "lib/current -> deep", "lib/deep/", "lib/deep/data.txt", "lib/up -> ../bin/server",
	}, pkgTree(t, dst))
	fi, err := os.Stat(filepath.Join(dst, "bin/server"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "exec bits kept, group/other write dropped")
	require.Zero(t, fi.Mode()&os.ModeSetuid, "setuid dropped")
	alias, err := os.Stat(filepath.Join(dst, "bin/alias"))
	require.NoError(t, err)
	require.True(t, os.SameFile(fi, alias), "hard link")
	b, err := os.ReadFile(filepath.Join(dst, "lib/current/data.txt"))
	require.NoError(t, err)
	require.Equal(t, "data", string(b))
	pkgAssertContained(t, base)
}

func TestExtractZipGood(t *testing.T) {
	for _, method := range []uint16{zip.Store, zip.Deflate} {
		dst, base := pkgSandbox(t)
		st, err := extractBytes(t, pkgZip(t, method, goodEntries[1:]...), dst, Limits{})
		require.NoError(t, err)
		require.Equal(t, formatZip, st.format)
		require.Equal(t, 6, st.Entries)
		require.Equal(t, []string{
			"bin/", "bin/server", "faas.json",
			"lib/", "lib/current -> deep", "lib/deep/", "lib/deep/data.txt", "lib/up -> ../bin/server",
		}, pkgTree(t, dst))
		fi, err := os.Stat(filepath.Join(dst, "bin/server"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
		pkgAssertContained(t, base)
	}
}

var allRejections = []error{
	errUnknownFormat, errCorruptArchive, errUnsafePath, errUnsafeLink,
	errSpecialFile, errDuplicateEntry, errTooManyFiles, errUnpackedTooLarge,
	errCompressionRatio, ErrBadManifest, errTooDeep,
}

func zeros(n int) string { return string(make([]byte, n)) }

func randomText(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return string(b)
}

// TestExtractRejectsMaliciousArchives is the table of hostile packages: each
// is refused with its own error, and nothing appears outside the
// destination.
func TestExtractRejectsMaliciousArchives(t *testing.T) {
	type tc struct {
		name    string
		archive func(t *testing.T, base string) []byte
		lim     Limits
		want    error
	}
	tarOf := func(e ...pkgEntry) func(*testing.T, string) []byte {
		return func(t *testing.T, _ string) []byte { return pkgTarGz(t, e...) }
	}
	zipOf := func(e ...pkgEntry) func(*testing.T, string) []byte {
		return func(t *testing.T, _ string) []byte { return pkgZip(t, zip.Deflate, e...) }
	}
	cases := []tc{
		{"tar absolute path", func(t *testing.T, base string) []byte {
			return pkgTarGz(t, pkgEntry{Name: filepath.Join(base, "outside", "abs"), Body: "x"})
		}, Limits{}, errUnsafePath},
		{"tar dot-dot", tarOf(pkgEntry{Name: "../outside/x", Body: "x"}), Limits{}, errUnsafePath},
		{"tar dot-dot inside path", tarOf(pkgEntry{Name: "a/../../outside/x", Body: "x"}), Limits{}, errUnsafePath},
		{"tar dot-dot that stays inside", tarOf(pkgEntry{Name: "a/../b", Body: "x"}), Limits{}, errUnsafePath},
		{"zip NUL in name", zipOf(pkgEntry{Name: "a\x00b", Body: "x"}), Limits{}, errUnsafePath},
		{"zip dot-dot", zipOf(pkgEntry{Name: "../outside/x", Body: "x"}), Limits{}, errUnsafePath},
		{"zip backslash dot-dot", zipOf(pkgEntry{Name: "..\\outside\\x", Body: "x"}), Limits{}, errUnsafePath},
		{"zip absolute path", func(t *testing.T, base string) []byte {
			return pkgZip(t, zip.Deflate, pkgEntry{Name: filepath.Join(base, "outside", "abs"), Body: "x"})
		}, Limits{}, errUnsafePath},
		{"tar symlink absolute", tarOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "/etc"}), Limits{}, errUnsafeLink},
		{"tar symlink escapes", tarOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "../outside"}), Limits{}, errUnsafeLink},
		{"tar nested symlink escapes", tarOf(pkgEntry{Name: "d/e/l", Type: tar.TypeSymlink, Linkname: "../../../outside"}), Limits{}, errUnsafeLink},
		{"tar write through symlink", tarOf(
			pkgEntry{Name: "sub/", Type: tar.TypeDir},
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "l/x", Body: "x"}), Limits{}, errUnsafePath},
		{"tar hard link outside", tarOf(pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "/etc/passwd"}), Limits{}, errUnsafeLink},
		{"tar hard link dot-dot", tarOf(pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "../outside/x"}), Limits{}, errUnsafeLink},
		{"tar hard link to a symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "x"},
			pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "l"}), Limits{}, errUnsafeLink},
		{"zip symlink absolute", zipOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}), Limits{}, errUnsafeLink},
		{"zip symlink escapes", zipOf(pkgEntry{Name: "a/l", Type: tar.TypeSymlink, Linkname: "../../x"}), Limits{}, errUnsafeLink},
		{"tar char device", tarOf(pkgEntry{Name: "null", Type: tar.TypeChar}), Limits{}, errSpecialFile},
		{"tar block device", tarOf(pkgEntry{Name: "sda", Type: tar.TypeBlock}), Limits{}, errSpecialFile},
		{"tar fifo", tarOf(pkgEntry{Name: "pipe", Type: tar.TypeFifo}), Limits{}, errSpecialFile},
		{"zip fifo", zipOf(pkgEntry{Name: "pipe", Type: tar.TypeFifo}), Limits{}, errSpecialFile},
		{"tar duplicate", tarOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a", Body: "2"}), Limits{}, errDuplicateEntry},
		{"tar file over symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "x"},
			pkgEntry{Name: "l", Body: "2"}), Limits{}, errDuplicateEntry},
		{"tar dir over file", tarOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a/", Type: tar.TypeDir}), Limits{}, errDuplicateEntry},
		{"zip duplicate", zipOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a", Body: "2"}), Limits{}, errDuplicateEntry},
		{"tar too many files", tarOf(pkgEntry{Name: "1"}, pkgEntry{Name: "2"}, pkgEntry{Name: "3"}, pkgEntry{Name: "4"}),
			Limits{MaxFiles: 3}, errTooManyFiles},
		{"zip too many files", zipOf(pkgEntry{Name: "1"}, pkgEntry{Name: "2"}, pkgEntry{Name: "3"}, pkgEntry{Name: "4"}),
			Limits{MaxFiles: 3}, errTooManyFiles},
		{"tar too large", func(t *testing.T, _ string) []byte {
			return pkgTarGz(t, pkgEntry{Name: "big", Body: randomText(t, 5000)})
		}, Limits{MaxBytes: 4096}, errUnpackedTooLarge},
		{"zip too large", func(t *testing.T, _ string) []byte {
			return pkgZip(t, zip.Deflate, pkgEntry{Name: "big", Body: randomText(t, 5000)})
		}, Limits{MaxBytes: 4096}, errUnpackedTooLarge},
		{"tar.gz bomb", tarOf(pkgEntry{Name: "zeros", Body: zeros(8 << 20)}), Limits{}, errCompressionRatio},
		{"zip bomb", zipOf(pkgEntry{Name: "zeros", Body: zeros(8 << 20)}), Limits{}, errCompressionRatio},
		{"unknown format", func(*testing.T, string) []byte { return []byte("#!/bin/sh\necho hi\n") }, Limits{}, errUnknownFormat},
		{"empty", func(*testing.T, string) []byte { return nil }, Limits{}, errUnknownFormat},
		{"corrupt gzip", func(*testing.T, string) []byte { return []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3} }, Limits{}, errCorruptArchive},
		{"truncated tar.gz", func(t *testing.T, _ string) []byte {
			b := pkgTarGz(t, pkgEntry{Name: "f", Body: randomText(t, 4000)})
			return b[:len(b)/2]
		}, Limits{}, errCorruptArchive},
		{"truncated zip", func(t *testing.T, _ string) []byte {
			b := pkgZip(t, zip.Deflate, pkgEntry{Name: "f", Body: randomText(t, 4000)})
			return b[:len(b)-30]
		}, Limits{}, errCorruptArchive},
		{"tar unsupported type", tarOf(pkgEntry{Name: "c", Type: tar.TypeCont}), Limits{}, errSpecialFile},
		{"tar hard link through a symlink", tarOf(
			pkgEntry{Name: "sub/f", Body: "x"},
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "l/f"}), Limits{}, errUnsafeLink},
		{"tar directory over a symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "l/", Type: tar.TypeDir}), Limits{}, errDuplicateEntry},
		{"tar file over a dangling symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "nowhere"},
			pkgEntry{Name: "l", Body: "x"}), Limits{}, errDuplicateEntry},
		{"tar too many implied directories", tarOf(pkgEntry{Name: "a/b/c/f", Body: "x"}),
			Limits{MaxFiles: 3}, errTooManyFiles},
		{"tar too deep", tarOf(pkgEntry{Name: strings.Repeat("d/", 64) + "f", Body: "x"}), Limits{}, errTooDeep},
		{"zip too deep", zipOf(pkgEntry{Name: strings.Repeat("d/", 64) + "f", Body: "x"}), Limits{}, errTooDeep},
		{"tar deeper than a custom limit", tarOf(pkgEntry{Name: "a/b/c/d/", Type: tar.TypeDir}), Limits{MaxDepth: 3}, errTooDeep},
		{"tar symlink too deep", tarOf(pkgEntry{Name: "a/b/c/l", Type: tar.TypeSymlink, Linkname: "x"}), Limits{MaxDepth: 3}, errTooDeep},
	}
	// Links that are spelt inside the package and resolve outside it,
	// through links the package itself created: each as tar and as zip.
	up21 := strings.Repeat("../", 21)
	for _, c := range []struct {
		name    string
		entries []pkgEntry
		want    error
	}{
		{"symlink chain to the parent", []pkgEntry{
			{Name: "d/", Type: tar.TypeDir},
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "d/l/.."}}, errUnsafeLink},
		{"symlink chain two levels down", []pkgEntry{
			{Name: "d/e/l", Type: tar.TypeSymlink, Linkname: "../.."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "d/e/l/../outside"}}, errUnsafeLink},
		{"link to a link to the root, then up", []pkgEntry{
			{Name: "d/up", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "a", Type: tar.TypeSymlink, Linkname: "d/up"},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "a/.."}}, errUnsafeLink},
		{"symlink chain to an absolute path", []pkgEntry{
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: strings.Repeat("d/l/", 20) + up21 + "etc/passwd"}}, errUnsafeLink},
		{"nested chain of links", []pkgEntry{
			{Name: "a/b/c/l", Type: tar.TypeSymlink, Linkname: "../../.."},
			{Name: "a/b/m", Type: tar.TypeSymlink, Linkname: "c/l/a"},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "a/b/m/../.."}}, errUnsafeLink},
		{"a later link makes an earlier one escape", []pkgEntry{
			{Name: "x", Type: tar.TypeSymlink, Linkname: "m/../outside"},
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "m", Type: tar.TypeSymlink, Linkname: "d/l"}}, errUnsafeLink},
		{"link loop", []pkgEntry{
			{Name: "a", Type: tar.TypeSymlink, Linkname: "b"},
			{Name: "b", Type: tar.TypeSymlink, Linkname: "a"}}, errUnsafeLink},
		{"link to itself", []pkgEntry{{Name: "a", Type: tar.TypeSymlink, Linkname: "./a"}}, errUnsafeLink},
		{"link loop through a directory", []pkgEntry{
			{Name: "d/a", Type: tar.TypeSymlink, Linkname: "../d/a/x"}}, errUnsafeLink},
		{"link too long to resolve", []pkgEntry{
			{Name: "a", Type: tar.TypeSymlink, Linkname: strings.Repeat("./", 2000) + "b"}}, errUnsafeLink},
		{"link that differs in case from a chain", []pkgEntry{
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "D/l/.."}}, errUnsafeLink},
		{"write through a symlink", []pkgEntry{
			{Name: "sub/", Type: tar.TypeDir},
			{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			{Name: "l/x", Body: "x"}}, errUnsafePath},
		{"write through a symlink deep down", []pkgEntry{
			{Name: "a/l", Type: tar.TypeSymlink, Linkname: "../b"},
			{Name: "a/l/c/d", Body: "x"}}, errUnsafePath},
	} {
		cases = append(cases, tc{"tar " + c.name, tarOf(c.entries...), Limits{}, c.want})
		var zipEntries []pkgEntry
		for _, e := range c.entries {
			if e.Type != tar.TypeDir { // zip needs no directory entries
				zipEntries = append(zipEntries, e)
			}
		}
		cases = append(cases, tc{"zip " + c.name, zipOf(zipEntries...), Limits{}, c.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst, base := pkgSandbox(t)
			_, err := extractBytes(t, c.archive(t, base), dst, c.lim)
			require.ErrorIs(t, err, c.want)
			require.ErrorIs(t, err, ErrBadPackage)
			for _, other := range allRejections {
				if other != c.want {
					require.NotErrorIs(t, err, other, "error %v matches more than its own cause", err)
				}
			}
			var ee *extractError
			require.ErrorAs(t, err, &ee)
			require.NotEmpty(t, ee.Detail)
			pkgAssertContained(t, base)
			pkgAssertLinksInside(t, dst) // even a refused package leaves no way out
			_, statErr := os.Lstat("/etc/passwd-faas-test")
			require.True(t, os.IsNotExist(statErr))
		})
	}
}

func TestExtractHonoursContext(t *testing.T) {
	dst, _ := pkgSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := pkgTarGz(t, pkgEntry{Name: "a", Body: "x"})
	_, err := extract(ctx, bytes.NewReader(b), int64(len(b)), dst, Limits{})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrBadPackage)
}

func TestExtractSmallPackagesBelowRatioFloor(t *testing.T) {
	// 512 KiB of zeros compresses far beyond 100:1 but is below the floor.
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t, pkgEntry{Name: "z", Body: zeros(512 << 10)}), dst, Limits{})
	require.NoError(t, err)
	// A custom ratio applies above the floor.
	dst, _ = pkgSandbox(t)
	body := strings.Repeat("abcdefgh", 300<<10) // 2.4 MB, very compressible
	_, err = extractBytes(t, pkgTarGz(t, pkgEntry{Name: "t", Body: body}), dst, Limits{MaxRatio: 2})
	require.ErrorIs(t, err, errCompressionRatio)
}

func TestDetectFormat(t *testing.T) {
	require.Equal(t, formatTarGz, detectFormat([]byte{0x1f, 0x8b, 8, 0}))
	require.Equal(t, formatZip, detectFormat([]byte("PK\x03\x04")))
	require.Equal(t, formatZip, detectFormat([]byte("PK\x05\x06"))) // empty zip
	require.Equal(t, formatUnknown, detectFormat([]byte("PK")))
	require.Equal(t, "tar.gz", formatTarGz.String())
	require.Equal(t, "zip", formatZip.String())
	require.Equal(t, "unknown", formatUnknown.String())
}

func TestExtractErrorMessage(t *testing.T) {
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t, pkgEntry{Name: "../x", Body: "x"}), dst, Limits{})
	require.EqualError(t, err, `code: unsafe path in archive: entry "../x": path has a ".." element`)
	require.True(t, errors.Is(err, ErrBadPackage))
}
