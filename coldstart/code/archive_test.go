package code_test

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

	"github.com/faasplane/faas/coldstart/code"
	"github.com/stretchr/testify/require"
)

func extractBytes(t testing.TB, archive []byte, dst string, lim code.Limits) (code.ExtractStats, error) {
	t.Helper()
	return code.Extract(context.Background(), bytes.NewReader(archive), int64(len(archive)), dst, lim)
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
	st, err := extractBytes(t, pkgTarGz(t, entries...), dst, code.Limits{})
	require.NoError(t, err)
	require.Equal(t, code.FormatTarGz, st.Format)
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
		st, err := extractBytes(t, pkgZip(t, method, goodEntries[1:]...), dst, code.Limits{})
		require.NoError(t, err)
		require.Equal(t, code.FormatZip, st.Format)
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
	code.ErrUnknownFormat, code.ErrCorruptArchive, code.ErrUnsafePath, code.ErrUnsafeLink,
	code.ErrSpecialFile, code.ErrDuplicateEntry, code.ErrTooManyFiles, code.ErrUnpackedTooLarge,
	code.ErrCompressionRatio, code.ErrBadManifest, code.ErrTooDeep,
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
		lim     code.Limits
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
		}, code.Limits{}, code.ErrUnsafePath},
		{"tar dot-dot", tarOf(pkgEntry{Name: "../outside/x", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"tar dot-dot inside path", tarOf(pkgEntry{Name: "a/../../outside/x", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"tar dot-dot that stays inside", tarOf(pkgEntry{Name: "a/../b", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"zip NUL in name", zipOf(pkgEntry{Name: "a\x00b", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"zip dot-dot", zipOf(pkgEntry{Name: "../outside/x", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"zip backslash dot-dot", zipOf(pkgEntry{Name: "..\\outside\\x", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"zip absolute path", func(t *testing.T, base string) []byte {
			return pkgZip(t, zip.Deflate, pkgEntry{Name: filepath.Join(base, "outside", "abs"), Body: "x"})
		}, code.Limits{}, code.ErrUnsafePath},
		{"tar symlink absolute", tarOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "/etc"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar symlink escapes", tarOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "../outside"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar nested symlink escapes", tarOf(pkgEntry{Name: "d/e/l", Type: tar.TypeSymlink, Linkname: "../../../outside"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar write through symlink", tarOf(
			pkgEntry{Name: "sub/", Type: tar.TypeDir},
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "l/x", Body: "x"}), code.Limits{}, code.ErrUnsafePath},
		{"tar hard link outside", tarOf(pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "/etc/passwd"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar hard link dot-dot", tarOf(pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "../outside/x"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar hard link to a symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "x"},
			pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "l"}), code.Limits{}, code.ErrUnsafeLink},
		{"zip symlink absolute", zipOf(pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}), code.Limits{}, code.ErrUnsafeLink},
		{"zip symlink escapes", zipOf(pkgEntry{Name: "a/l", Type: tar.TypeSymlink, Linkname: "../../x"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar char device", tarOf(pkgEntry{Name: "null", Type: tar.TypeChar}), code.Limits{}, code.ErrSpecialFile},
		{"tar block device", tarOf(pkgEntry{Name: "sda", Type: tar.TypeBlock}), code.Limits{}, code.ErrSpecialFile},
		{"tar fifo", tarOf(pkgEntry{Name: "pipe", Type: tar.TypeFifo}), code.Limits{}, code.ErrSpecialFile},
		{"zip fifo", zipOf(pkgEntry{Name: "pipe", Type: tar.TypeFifo}), code.Limits{}, code.ErrSpecialFile},
		{"tar duplicate", tarOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a", Body: "2"}), code.Limits{}, code.ErrDuplicateEntry},
		{"tar file over symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "x"},
			pkgEntry{Name: "l", Body: "2"}), code.Limits{}, code.ErrDuplicateEntry},
		{"tar dir over file", tarOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a/", Type: tar.TypeDir}), code.Limits{}, code.ErrDuplicateEntry},
		{"zip duplicate", zipOf(pkgEntry{Name: "a", Body: "1"}, pkgEntry{Name: "a", Body: "2"}), code.Limits{}, code.ErrDuplicateEntry},
		{"tar too many files", tarOf(pkgEntry{Name: "1"}, pkgEntry{Name: "2"}, pkgEntry{Name: "3"}, pkgEntry{Name: "4"}),
			code.Limits{MaxFiles: 3}, code.ErrTooManyFiles},
		{"zip too many files", zipOf(pkgEntry{Name: "1"}, pkgEntry{Name: "2"}, pkgEntry{Name: "3"}, pkgEntry{Name: "4"}),
			code.Limits{MaxFiles: 3}, code.ErrTooManyFiles},
		{"tar too large", func(t *testing.T, _ string) []byte {
			return pkgTarGz(t, pkgEntry{Name: "big", Body: randomText(t, 5000)})
		}, code.Limits{MaxBytes: 4096}, code.ErrUnpackedTooLarge},
		{"zip too large", func(t *testing.T, _ string) []byte {
			return pkgZip(t, zip.Deflate, pkgEntry{Name: "big", Body: randomText(t, 5000)})
		}, code.Limits{MaxBytes: 4096}, code.ErrUnpackedTooLarge},
		{"tar.gz bomb", tarOf(pkgEntry{Name: "zeros", Body: zeros(8 << 20)}), code.Limits{}, code.ErrCompressionRatio},
		{"zip bomb", zipOf(pkgEntry{Name: "zeros", Body: zeros(8 << 20)}), code.Limits{}, code.ErrCompressionRatio},
		{"unknown format", func(*testing.T, string) []byte { return []byte("#!/bin/sh\necho hi\n") }, code.Limits{}, code.ErrUnknownFormat},
		{"empty", func(*testing.T, string) []byte { return nil }, code.Limits{}, code.ErrUnknownFormat},
		{"corrupt gzip", func(*testing.T, string) []byte { return []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3} }, code.Limits{}, code.ErrCorruptArchive},
		{"truncated tar.gz", func(t *testing.T, _ string) []byte {
			b := pkgTarGz(t, pkgEntry{Name: "f", Body: randomText(t, 4000)})
			return b[:len(b)/2]
		}, code.Limits{}, code.ErrCorruptArchive},
		{"truncated zip", func(t *testing.T, _ string) []byte {
			b := pkgZip(t, zip.Deflate, pkgEntry{Name: "f", Body: randomText(t, 4000)})
			return b[:len(b)-30]
		}, code.Limits{}, code.ErrCorruptArchive},
		{"tar unsupported type", tarOf(pkgEntry{Name: "c", Type: tar.TypeCont}), code.Limits{}, code.ErrSpecialFile},
		{"tar hard link through a symlink", tarOf(
			pkgEntry{Name: "sub/f", Body: "x"},
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "l/f"}), code.Limits{}, code.ErrUnsafeLink},
		{"tar directory over a symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			pkgEntry{Name: "l/", Type: tar.TypeDir}), code.Limits{}, code.ErrDuplicateEntry},
		{"tar file over a dangling symlink", tarOf(
			pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "nowhere"},
			pkgEntry{Name: "l", Body: "x"}), code.Limits{}, code.ErrDuplicateEntry},
		{"tar too many implied directories", tarOf(pkgEntry{Name: "a/b/c/f", Body: "x"}),
			code.Limits{MaxFiles: 3}, code.ErrTooManyFiles},
		{"tar too deep", tarOf(pkgEntry{Name: strings.Repeat("d/", 64) + "f", Body: "x"}), code.Limits{}, code.ErrTooDeep},
		{"zip too deep", zipOf(pkgEntry{Name: strings.Repeat("d/", 64) + "f", Body: "x"}), code.Limits{}, code.ErrTooDeep},
		{"tar deeper than a custom limit", tarOf(pkgEntry{Name: "a/b/c/d/", Type: tar.TypeDir}), code.Limits{MaxDepth: 3}, code.ErrTooDeep},
		{"tar symlink too deep", tarOf(pkgEntry{Name: "a/b/c/l", Type: tar.TypeSymlink, Linkname: "x"}), code.Limits{MaxDepth: 3}, code.ErrTooDeep},
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
			{Name: "x", Type: tar.TypeSymlink, Linkname: "d/l/.."}}, code.ErrUnsafeLink},
		{"symlink chain two levels down", []pkgEntry{
			{Name: "d/e/l", Type: tar.TypeSymlink, Linkname: "../.."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "d/e/l/../outside"}}, code.ErrUnsafeLink},
		{"link to a link to the root, then up", []pkgEntry{
			{Name: "d/up", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "a", Type: tar.TypeSymlink, Linkname: "d/up"},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "a/.."}}, code.ErrUnsafeLink},
		{"symlink chain to an absolute path", []pkgEntry{
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: strings.Repeat("d/l/", 20) + up21 + "etc/passwd"}}, code.ErrUnsafeLink},
		{"nested chain of links", []pkgEntry{
			{Name: "a/b/c/l", Type: tar.TypeSymlink, Linkname: "../../.."},
			{Name: "a/b/m", Type: tar.TypeSymlink, Linkname: "c/l/a"},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "a/b/m/../.."}}, code.ErrUnsafeLink},
		{"a later link makes an earlier one escape", []pkgEntry{
			{Name: "x", Type: tar.TypeSymlink, Linkname: "m/../outside"},
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "m", Type: tar.TypeSymlink, Linkname: "d/l"}}, code.ErrUnsafeLink},
		{"link loop", []pkgEntry{
			{Name: "a", Type: tar.TypeSymlink, Linkname: "b"},
			{Name: "b", Type: tar.TypeSymlink, Linkname: "a"}}, code.ErrUnsafeLink},
		{"link to itself", []pkgEntry{{Name: "a", Type: tar.TypeSymlink, Linkname: "./a"}}, code.ErrUnsafeLink},
		{"link loop through a directory", []pkgEntry{
			{Name: "d/a", Type: tar.TypeSymlink, Linkname: "../d/a/x"}}, code.ErrUnsafeLink},
		{"link too long to resolve", []pkgEntry{
			{Name: "a", Type: tar.TypeSymlink, Linkname: strings.Repeat("./", 2000) + "b"}}, code.ErrUnsafeLink},
		{"link that differs in case from a chain", []pkgEntry{
			{Name: "d/l", Type: tar.TypeSymlink, Linkname: ".."},
			{Name: "x", Type: tar.TypeSymlink, Linkname: "D/l/.."}}, code.ErrUnsafeLink},
		{"write through a symlink", []pkgEntry{
			{Name: "sub/", Type: tar.TypeDir},
			{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"},
			{Name: "l/x", Body: "x"}}, code.ErrUnsafePath},
		{"write through a symlink deep down", []pkgEntry{
			{Name: "a/l", Type: tar.TypeSymlink, Linkname: "../b"},
			{Name: "a/l/c/d", Body: "x"}}, code.ErrUnsafePath},
	} {
		cases = append(cases, tc{"tar " + c.name, tarOf(c.entries...), code.Limits{}, c.want})
		var zipEntries []pkgEntry
		for _, e := range c.entries {
			if e.Type != tar.TypeDir { // zip needs no directory entries
				zipEntries = append(zipEntries, e)
			}
		}
		cases = append(cases, tc{"zip " + c.name, zipOf(zipEntries...), code.Limits{}, c.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst, base := pkgSandbox(t)
			_, err := extractBytes(t, c.archive(t, base), dst, c.lim)
			require.ErrorIs(t, err, c.want)
			require.ErrorIs(t, err, code.ErrBadPackage)
			for _, other := range allRejections {
				if other != c.want {
					require.NotErrorIs(t, err, other, "error %v matches more than its own cause", err)
				}
			}
			var ee *code.ExtractError
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
	_, err := code.Extract(ctx, bytes.NewReader(b), int64(len(b)), dst, code.Limits{})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, code.ErrBadPackage)
}

func TestExtractSmallPackagesBelowRatioFloor(t *testing.T) {
	// 512 KiB of zeros compresses far beyond 100:1 but is below the floor.
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t, pkgEntry{Name: "z", Body: zeros(512 << 10)}), dst, code.Limits{})
	require.NoError(t, err)
	// A custom ratio applies above the floor.
	dst, _ = pkgSandbox(t)
	body := strings.Repeat("abcdefgh", 300<<10) // 2.4 MB, very compressible
	_, err = extractBytes(t, pkgTarGz(t, pkgEntry{Name: "t", Body: body}), dst, code.Limits{MaxRatio: 2})
	require.ErrorIs(t, err, code.ErrCompressionRatio)
}

func TestDetectFormat(t *testing.T) {
	require.Equal(t, code.FormatTarGz, code.DetectFormat([]byte{0x1f, 0x8b, 8, 0}))
	require.Equal(t, code.FormatZip, code.DetectFormat([]byte("PK\x03\x04")))
	require.Equal(t, code.FormatZip, code.DetectFormat([]byte("PK\x05\x06"))) // empty zip
	require.Equal(t, code.FormatUnknown, code.DetectFormat([]byte("PK")))
	require.Equal(t, "tar.gz", code.FormatTarGz.String())
	require.Equal(t, "zip", code.FormatZip.String())
	require.Equal(t, "unknown", code.FormatUnknown.String())
}

func TestExtractErrorMessage(t *testing.T) {
	dst, _ := pkgSandbox(t)
	_, err := extractBytes(t, pkgTarGz(t, pkgEntry{Name: "../x", Body: "x"}), dst, code.Limits{})
	require.EqualError(t, err, `code: unsafe path in archive: entry "../x": path has a ".." element`)
	require.True(t, errors.Is(err, code.ErrBadPackage))
}
