package code_test

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

	"github.com/faasplane/faas/coldstart/code"
)

// FuzzExtract unpacks arbitrary bytes with small limits. Whatever the input,
// Extract returns nil or an error matching ErrBadPackage, never panics or
// hangs, and writes nothing outside the destination; every symlink it leaves
// resolves inside it.
func FuzzExtract(f *testing.F) {
	f.Add(pkgTarGz(f, goodEntries...))
	f.Add(pkgZip(f, zip.Deflate, goodEntries[1:]...))
	f.Add(pkgZip(f, zip.Store, pkgEntry{Name: "a/b", Body: "x"}))
	f.Add(pkgTarGz(f, pkgEntry{Name: "../x", Body: "x"}))
	f.Add(pkgTarGz(f, pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "sub"}, pkgEntry{Name: "l/x", Body: "x"}))
	f.Add(pkgTarGz(f, pkgEntry{Name: "h", Type: tar.TypeLink, Linkname: "/etc/passwd"}))
	f.Add(pkgZip(f, zip.Deflate, pkgEntry{Name: "l", Type: tar.TypeSymlink, Linkname: "../../x"}))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, archive []byte) {
		base := t.TempDir()
		dst := filepath.Join(base, "dst")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		lim := code.Limits{MaxFiles: 64, MaxBytes: 1 << 20, MaxRatio: 100}
		_, err := code.Extract(context.Background(), bytes.NewReader(archive), int64(len(archive)), dst, lim)
		if err != nil && !errors.Is(err, code.ErrBadPackage) {
			t.Fatalf("error outside the package's set: %v", err)
		}
		entries, rerr := os.ReadDir(base)
		if rerr != nil || len(entries) != 1 || entries[0].Name() != "dst" {
			t.Fatalf("something was written next to dst: %v", entries)
		}
		if err != nil {
			return
		}
		// Every symlink resolves inside dst.
		_ = filepath.WalkDir(dst, func(p string, d os.DirEntry, werr error) error {
			if werr != nil || d.Type()&os.ModeSymlink == 0 {
				return nil
			}
			target, _ := os.Readlink(p)
			rel, _ := filepath.Rel(dst, filepath.Join(filepath.Dir(p), target))
			if filepath.IsAbs(target) || !filepath.IsLocal(rel) {
				t.Fatalf("symlink %s -> %s leaves the package", p, target)
			}
			return nil
		})
	})
}

// FuzzParseManifest: any input yields a valid manifest or a ManifestError.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"command":"./hello","args":["a"],"env":{"K":"v"},"protocol":"h2c","init_path":"/i"}`))
	f.Add([]byte(`{"command":"../x"}`))
	f.Add([]byte(`{"init_path":"/a/.."}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := code.ParseManifest(data)
		if err != nil {
			var me *code.ManifestError
			if !errors.As(err, &me) || !errors.Is(err, code.ErrBadPackage) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
	})
}
