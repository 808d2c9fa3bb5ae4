package code

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// cacheFile is an open package file shared by the readers of one digest and
// by the cache's table of open files. Keeping the most recently used files
// open makes a hit cost a map lookup instead of open(2), fstat(2) and
// close(2), which is most of a cold start's time in the cache. The file is
// closed when its last holder lets go of it; a file deleted meanwhile
// (evicted) stays readable until then, as POSIX promises.
type cacheFile struct {
	f    *os.File
	refs atomic.Int32
}

func (h *cacheFile) release() {
	if h.refs.Add(-1) == 0 {
		_ = h.f.Close()
	}
}

// cacheReader reads one cached package through a shared file with pread, so
// that any number of readers share one descriptor. It implements
// io.ReaderAt and io.Seeker too (archive/zip needs them). A reader must not
// be used from several goroutines at once, like an *os.File's offset.
type cacheReader struct {
	h       *cacheFile
	size    int64
	off     int64
	closed  bool
	digest  string
	damaged func(digest string)
}

var _ interface {
	io.ReadCloser
	io.ReaderAt
	io.Seeker
} = (*cacheReader)(nil)

var errReaderClosed = errors.New("code cache: read after close")

func (r *cacheReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errReaderClosed
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, err := r.ReadAt(p[:min(int64(len(p)), r.size-r.off)], r.off)
	r.off += int64(n)
	return n, err
}

// ReadAt reads from the package at off; it never reads past its size.
func (r *cacheReader) ReadAt(p []byte, off int64) (int, error) {
	if r.closed {
		return 0, errReaderClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("code cache: negative offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if rem := r.size - off; int64(len(p)) > rem {
		want = p[:rem]
	}
	n, err := r.h.f.ReadAt(want, off)
	switch {
	case n == len(want) && len(want) < len(p):
		return n, io.EOF
	case n == len(want):
		return n, nil
	case err == io.EOF:
		// The file is shorter than it was when admitted: someone truncated
		// it behind the cache's back. Never hand out a short package.
		if r.damaged != nil {
			r.damaged(r.digest)
		}
		return n, fmt.Errorf("%w: cached file of %s was truncated", ErrSizeMismatch, r.digest)
	}
	return n, err
}

func (r *cacheReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, fmt.Errorf("code cache: bad whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("code cache: negative position %d", abs)
	}
	r.off = abs
	return abs, nil
}

// Size returns the package's length.
func (r *cacheReader) Size() int64 { return r.size }

// Close lets go of the shared file; it is idempotent.
func (r *cacheReader) Close() error {
	if !r.closed {
		r.closed = true
		r.h.release()
	}
	return nil
}
