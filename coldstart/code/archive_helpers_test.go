package code_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pkgEntry describes one archive entry for the test archive builders.
type pkgEntry struct {
	Name     string
	Body     string
	Mode     int64 // permission bits; 0 means 0644
	Type     byte  // tar type flag; 0 means regular file
	Linkname string
}

func pkgTarGz(t testing.TB, entries ...pkgEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.Name, Mode: mode, Typeflag: typ, Linkname: e.Linkname, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		require.NoError(t, tw.WriteHeader(hdr))
		if typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.Body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// pkgZip builds a zip; Type tar.TypeSymlink makes a symlink whose target
// is Linkname, tar.TypeDir a directory, tar.TypeFifo a named pipe.
func pkgZip(t testing.TB, method uint16, entries ...pkgEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		perm := fs.FileMode(e.Mode)
		if perm == 0 {
			perm = 0o644
		}
		hdr := &zip.FileHeader{Name: e.Name, Method: method}
		body := e.Body
		switch e.Type {
		case tar.TypeSymlink:
			hdr.SetMode(fs.ModeSymlink | 0o777)
			body = e.Linkname
		case tar.TypeDir:
			hdr.SetMode(fs.ModeDir | 0o755)
		case tar.TypeFifo:
			hdr.SetMode(fs.ModeNamedPipe | 0o644)
		default:
			hdr.SetMode(perm)
		}
		w, err := zw.CreateHeader(hdr)
		require.NoError(t, err)
		_, err = w.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// pkgTree lists every path below dir with a type mark: "name" for files,
// "name/" for directories and "name -> target" for symlinks.
func pkgTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// pkgSandbox makes base/{work/dst, outside} and returns (dst, base). After
// an extraction into dst, pkgAssertContained checks that nothing appeared
// anywhere in base but below dst.
func pkgSandbox(t testing.TB) (dst, base string) {
	t.Helper()
	base = t.TempDir()
	dst = filepath.Join(base, "work", "dst")
	require.NoError(t, os.MkdirAll(dst, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(base, "outside"), 0o755))
	return dst, base
}

func pkgAssertContained(t testing.TB, base string) {
	t.Helper()
	for _, p := range pkgTree(t, base) {
		if p == "work/" || p == "outside/" || p == "work/dst/" || (len(p) > 9 && p[:9] == "work/dst/") {
			continue
		}
		t.Fatalf("extraction wrote outside the destination: %s", p)
	}
}
