package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
)

// DirStore is an origin store of packages in a local directory, addressed
// by file:// URIs ("file:///srv/code/f.tar.gz"). It serves only files inside
// its directory: paths are resolved through an [os.Root], so neither ".."
// nor a symlink can make it open a file elsewhere. It is safe for concurrent
// use.
type DirStore struct {
	dir  string
	root *os.Root
}

// NewDirStore returns a store of the files below dir, which must be an
// existing directory. Close releases it.
func NewDirStore(dir string) (*DirStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("code: dir store: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("code: dir store: %w", err)
	}
	return &DirStore{dir: abs, root: root}, nil
}

// Dir returns the store's directory as an absolute path.
func (s *DirStore) Dir() string { return s.dir }

// URI returns the file:// URI of the file at the relative path name in the
// store's directory.
func (s *DirStore) URI(name string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(s.dir, name))}).String()
}

// Open opens the package at ref.URI, which must be a file:// URI of a
// regular file inside the store's directory whose size is ref.Size. A file
// that does not exist, is outside the directory or is not a regular file is
// ErrNotFound; a size other than ref.Size is ErrSizeMismatch. The digest is
// not checked here ([VerifyReader] does that).
func (s *DirStore) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := FilePath(ref.URI)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(s.dir, p)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("%w: %s is outside the store's directory %s", ErrNotFound, short(ref.URI), s.dir)
	}
	f, err := s.root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, short(ref.URI))
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotFound, short(ref.URI), err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrNotFound, short(ref.URI))
	}
	if fi.Size() != ref.Size {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s has %d bytes, reference says %d", ErrSizeMismatch, short(ref.URI), fi.Size(), ref.Size)
	}
	return f, nil
}

// Close releases the store's directory handle. Open fails afterwards.
func (s *DirStore) Close() error { return s.root.Close() }

// FilePath returns the local path of a file:// URI ("file:///a/b" or
// "file://localhost/a/b"), or an error wrapping ErrInvalidRef.
func FilePath(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidRef, err)
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("%w: %q is not a file:// URI", ErrInvalidRef, short(uri))
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("%w: file URI %q names a remote host", ErrInvalidRef, short(uri))
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: file URI %q must be file:///absolute/path", ErrInvalidRef, short(uri))
	}
	return filepath.Clean(u.Path), nil
}
