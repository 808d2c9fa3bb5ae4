package code

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract unpacks arbitrary bytes with small limits. Whatever the input,
// Extract returns nil or an error matching ErrBadPackage, never panics or
// hangs, and writes nothing outside the destination; and every symlink it
// leaves, on success or not, resolves inside it, judged by what the link
// resolves to on disk (element by element through the other links, and
// with filepath.EvalSymlinks), not by how its target is spelt.
func FuzzExtract(f *testing.F) {
	sym := func(name, target string) pkgEntry {
		return pkgEntry{Name: name, Type: tar.TypeSymlink, Linkname: target}
	}
	for _, entries := range [][]pkgEntry{
		goodEntries[1:],
		{{Name: "a/b", Body: "x"}},
		{{Name: "../x", Body: "x"}},
		{sym("l", "sub"), {Name: "l/x", Body: "x"}},
		{{Name: "h", Type: tar.TypeLink, Linkname: "/etc/passwd"}},
		{sym("l", "../../x")},
		// Chains that are spelt inside and resolve outside.
		{sym("d/l", ".."), sym("x", "d/l/..")},
		{sym("d/up", ".."), sym("a", "d/up"), sym("x", "a/..")},
		{sym("d/l", ".."), sym("x", strings.Repeat("d/l/", 6)+strings.Repeat("../", 7)+"etc/passwd")},
		{sym("x", "m/../y"), sym("d/l", ".."), sym("m", "d/l")},
		{sym("a", "b"), sym("b", "a")},
		{sym("d/l", ".."), sym("x", "D/l/..")},
		{{Name: strings.Repeat("d/", 9) + "f", Body: "x"}},
	} {
		f.Add(pkgTarGz(f, entries...))
		f.Add(pkgZip(f, zip.Deflate, entries...))
	}
	f.Add(pkgTarGz(f, goodEntries...))
	f.Add(pkgZip(f, zip.Store, pkgEntry{Name: "a/b", Body: "x"}))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, archive []byte) {
		base := t.TempDir()
		dst := filepath.Join(base, "dst")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		lim := Limits{MaxFiles: 64, MaxBytes: 1 << 20, MaxRatio: 100, MaxDepth: 8}
		_, err := extract(context.Background(), bytes.NewReader(archive), int64(len(archive)), dst, lim)
		if err != nil && !errors.Is(err, ErrBadPackage) {
			t.Fatalf("error outside the package's set: %v", err)
		}
		entries, rerr := os.ReadDir(base)
		if rerr != nil || len(entries) != 1 || entries[0].Name() != "dst" {
			t.Fatalf("something was written next to dst: %v", entries)
		}
		pkgAssertLinksInside(t, dst)
	})
}

// FuzzParseManifest: any input yields a valid manifest or a ManifestError.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"command":"./hello","args":["a"],"env":{"K":"v"},"protocol":"h2c","init_path":"/i"}`))
	f.Add([]byte(`{"command":"../x"}`))
	f.Add([]byte(`{"init_path":"/a/.."}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) || !errors.Is(err, ErrBadPackage) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
	})
}
