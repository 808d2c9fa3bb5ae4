package code

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// DefaultSpoolMemory is the package size up to which [Unpack] holds a
// fetched package in memory; larger ones are spooled to a temporary file.
const DefaultSpoolMemory = 64 << 20

// UnpackOptions configures [Unpack]. The zero value is valid.
type UnpackOptions struct {
	// Limits bound the extraction; zero fields take Extract's defaults.
	Limits Limits
	// SpoolDir holds the temporary file of a package larger than
	// SpoolMemory that the store did not deliver as a file. Default: the
	// parent directory of dst.
	SpoolDir string
	// SpoolMemory is the size up to which a package is held in memory.
	// Default 64 MiB.
	SpoolMemory int64
}

// UnpackStats reports what Unpack did and how long each step took.
type UnpackStats struct {
	extractStats
	// Fetch is the time to open, read and verify the package.
	Fetch time.Duration
	// Extract is the time to write the tree.
	Extract time.Duration
}

// Unpack fetches ref from st, verifies its size and digest, and only then
// extracts it into dst safely. A reader that is also an io.ReaderAt
// (an *os.File of a directory store, a disk cache hit) is read twice, once
// to verify and once to extract, without a copy, and a [DiskCache] hit is
// not hashed again (the cache verified it before admitting it); any other
// reader is held in memory or spooled to a temporary file first. Errors wrap the store's errors
// (ErrNotFound, ErrFetch...), ErrSizeMismatch or ErrDigestMismatch, or an
// extraction error matching ErrBadPackage.
func Unpack(ctx context.Context, st Store, ref Ref, dst string, opt UnpackOptions) (UnpackStats, error) {
	var stats UnpackStats
	if err := ref.Validate(); err != nil {
		return stats, err
	}
	start := time.Now()
	rc, err := st.Open(ctx, ref)
	if err != nil {
		return stats, err
	}
	_, verified := st.(verifiedStore)
	src, cleanup, err := spool(ctx, rc, ref, dst, verified, opt)
	if err != nil {
		return stats, err
	}
	defer cleanup()
	stats.Fetch = time.Since(start)
	start = time.Now()
	stats.extractStats, err = extract(ctx, src, ref.Size, dst, opt.Limits)
	stats.Extract = time.Since(start)
	return stats, err
}

// spool reads rc to its end through VerifyReader and returns the verified
// bytes as an io.ReaderAt. A reader that is an io.ReaderAt already is
// returned as is, after the verifying read unless its store is verified.
// cleanup closes rc and removes any spool file.
func spool(ctx context.Context, rc io.ReadCloser, ref Ref, dst string, verified bool, opt UnpackOptions) (io.ReaderAt, func(), error) {
	vr := VerifyReader(ctxReadCloser{ctx, rc}, ref)
	if ra, ok := rc.(io.ReaderAt); ok {
		if !verified {
			if _, err := io.Copy(io.Discard, vr); err != nil {
				_ = rc.Close()
				return nil, nil, err
			}
		}
		return ra, func() { _ = rc.Close() }, nil
	}
	defer rc.Close()
	memMax := opt.SpoolMemory
	if memMax <= 0 {
		memMax = DefaultSpoolMemory
	}
	if ref.Size <= memMax {
		buf := bytes.NewBuffer(make([]byte, 0, ref.Size+1))
		if _, err := buf.ReadFrom(vr); err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(buf.Bytes()), func() {}, nil
	}
	dir := opt.SpoolDir
	if dir == "" {
		dir = filepath.Dir(dst)
	}
	tmp, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return nil, nil, fmt.Errorf("code: spooling %s: %w", ref.Digest, err)
	}
	cleanup := func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }
	if _, err := io.Copy(tmp, vr); err != nil {
		cleanup()
		return nil, nil, err
	}
	return tmp, cleanup, nil
}

// ctxReadCloser stops a read loop once ctx is done.
type ctxReadCloser struct {
	ctx context.Context
	io.ReadCloser
}

func (c ctxReadCloser) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.ReadCloser.Read(p)
}
