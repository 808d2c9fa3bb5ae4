package code

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

// deepTarGz builds the shape of the nesting attack: files empty files, all
// in one directory depth-1 levels down ("d/d/.../d/f17"), so every entry's
// name has depth elements.
func deepTarGz(t testing.TB, files, depth int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	prefix := strings.Repeat("d/", depth-1)
	for i := range files {
		hdr := &tar.Header{Name: prefix + "f" + strconv.Itoa(i), Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		require.NoError(t, tw.WriteHeader(hdr))
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// pkgLinkEscapes follows the symlink at p, below root, the way the kernel
// resolves a path (element by element, each link replaced by its target
// read from the link's directory) and reports the first point at which
// the resolution leaves root, or "" if it never does. Resolution stops
// where the kernel's would: at a missing path (ENOENT), at a file with
// elements left (ENOTDIR), after 40 links (ELOOP).
func pkgLinkEscapes(t testing.TB, root, p string) string {
	t.Helper()
	rel, err := filepath.Rel(root, filepath.Dir(p))
	require.NoError(t, err)
	var cur []string // directories below root, all real
	if rel != "." {
		cur = strings.Split(filepath.ToSlash(rel), "/")
	}
	target, err := os.Readlink(p)
	require.NoError(t, err)
	if filepath.IsAbs(target) {
		return "absolute target " + target
	}
	todo := []string{target} // unread rests of targets, innermost last
	for hops := 0; len(todo) > 0; {
		top := len(todo) - 1
		elem, rest, _ := strings.Cut(todo[top], "/")
		if rest == "" {
			todo = todo[:top]
		} else {
			todo[top] = rest
		}
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "above the root, reading " + target
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := filepath.Join(append([]string{root}, append(cur, elem)...)...)
		fi, err := os.Lstat(next)
		switch {
		case err != nil:
			return "" // ENOENT or ENOTDIR: the kernel stops here
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > 40 {
				return "" // ELOOP
			}
			lt, err := os.Readlink(next)
			if err != nil {
				return ""
			}
			if filepath.IsAbs(lt) {
				return "absolute target " + lt + " of " + next
			}
			todo = append(todo, lt)
		case fi.IsDir():
			cur = append(cur, elem)
		default:
			return "" // a file: the end, or ENOTDIR
		}
	}
	return ""
}

// pkgAssertLinksInside checks every symlink below dst twice: by kernel-like
// resolution (pkgLinkEscapes, which sees escapes a dangling link would
// make) and, where the link resolves, with filepath.EvalSymlinks.
func pkgAssertLinksInside(t testing.TB, dst string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(dst)
	require.NoError(t, err)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		if why := pkgLinkEscapes(t, root, p); why != "" {
			t.Fatalf("symlink %s resolves outside the package: %s", p, why)
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			rel, rerr := filepath.Rel(root, real)
			if rerr != nil || !filepath.IsLocal(rel) {
				t.Fatalf("symlink %s resolves to %s, outside %s", p, real, root)
			}
		}
		return nil
	})
	require.NoError(t, err)
}
