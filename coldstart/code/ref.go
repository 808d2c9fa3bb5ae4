package code

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Ref references a code package: where it is, what its bytes hash to, and
// how many bytes it has. A Ref is a value; two Refs with the same Digest name
// the same bytes wherever they are stored, which is what lets caches be
// content-addressed and shared.
type Ref struct {
	// URI locates the package at its origin, e.g. "file:///srv/code/f.tar.gz"
	// or "https://code.example.com/f.tar.gz". Stores other than the origin
	// (caches) ignore it and look the package up by Digest.
	URI string
	// Digest is "sha256:" followed by 64 lowercase hex digits.
	Digest string
	// Size is the package's length in bytes (> 0).
	Size int64
}

// Errors of code stores; test with errors.Is.
var (
	// ErrInvalidRef reports a Ref without a URI, with a malformed digest or
	// with a size <= 0.
	ErrInvalidRef = errors.New("code: invalid reference")
	// ErrNotFound reports a package the store does not have.
	ErrNotFound = errors.New("code: package not found")
	// ErrDigestMismatch reports bytes whose sha256 is not the Ref's digest.
	ErrDigestMismatch = errors.New("code: digest mismatch")
	// ErrSizeMismatch reports a package shorter or longer than the Ref's
	// size.
	ErrSizeMismatch = errors.New("code: size mismatch")
	// ErrTooLarge reports a package above a store's size cap.
	ErrTooLarge = errors.New("code: package too large")
)

// DigestPrefix starts every digest.
const DigestPrefix = "sha256:"

// Validate returns an error wrapping ErrInvalidRef when r is unusable.
func (r Ref) Validate() error {
	if r.URI == "" {
		return fmt.Errorf("%w: empty URI", ErrInvalidRef)
	}
	if err := ValidDigest(r.Digest); err != nil {
		return err
	}
	if r.Size <= 0 {
		return fmt.Errorf("%w: size must be > 0, got %d", ErrInvalidRef, r.Size)
	}
	return nil
}

// ValidDigest returns an error wrapping ErrInvalidRef unless d is "sha256:"
// followed by 64 lowercase hex digits.
func ValidDigest(d string) error {
	hexPart, ok := strings.CutPrefix(d, DigestPrefix)
	if !ok || len(hexPart) != 64 {
		return fmt.Errorf("%w: digest must be %q and 64 hex digits, got %q", ErrInvalidRef, DigestPrefix, short(d))
	}
	for i := 0; i < len(hexPart); i++ {
		if c := hexPart[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%w: digest has a non-hex or uppercase digit: %q", ErrInvalidRef, short(d))
		}
	}
	return nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// DigestOf returns the digest of b in Ref form.
func DigestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// RefFor returns a Ref for the bytes b at uri.
func RefFor(uri string, b []byte) Ref {
	return Ref{URI: uri, Digest: DigestOf(b), Size: int64(len(b))}
}

// Store opens code packages. Implementations must be safe for concurrent
// use. Open returns a reader of exactly ref.Size bytes; implementations are
// not required to verify the digest (callers wrap the reader in
// [VerifyReader] or read through a verifying tier such as the cache), but
// must return an error wrapping ErrNotFound for a package they do not have.
type Store interface {
	Open(ctx context.Context, ref Ref) (io.ReadCloser, error)
}

// StoreFunc adapts a function to [Store].
type StoreFunc func(ctx context.Context, ref Ref) (io.ReadCloser, error)

// Open calls f(ctx, ref).
func (f StoreFunc) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) { return f(ctx, ref) }

// VerifyReader wraps rc so that reading it to the end checks the package
// against ref: reading more than ref.Size bytes fails at once with
// ErrSizeMismatch (so a store that sends too much cannot fill a disk), and
// at EOF a short package fails with ErrSizeMismatch and a wrong hash with
// ErrDigestMismatch, instead of io.EOF. Data is only trustworthy once Read
// has returned io.EOF.
func VerifyReader(rc io.ReadCloser, ref Ref) io.ReadCloser {
	return &verifier{rc: rc, ref: ref, h: sha256.New()}
}

type verifier struct {
	rc  io.ReadCloser
	ref Ref
	h   hash.Hash
	n   int64
	err error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Read at most one byte past the declared size, to detect excess
	// without consuming an unbounded stream.
	if rem := v.ref.Size - v.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.rc.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.n > v.ref.Size {
		v.err = fmt.Errorf("%w: %s has more than the declared %d bytes", ErrSizeMismatch, v.ref.Digest, v.ref.Size)
		return 0, v.err
	}
	switch {
	case err == io.EOF:
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	case err != nil:
		v.err = err
	}
	return n, err
}

func (v *verifier) check() error {
	if v.n != v.ref.Size {
		return fmt.Errorf("%w: %s has %d bytes, declared %d", ErrSizeMismatch, v.ref.Digest, v.n, v.ref.Size)
	}
	got := DigestPrefix + hex.EncodeToString(v.h.Sum(nil))
	if got != v.ref.Digest {
		return fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, v.ref.Digest, got)
	}
	return nil
}

func (v *verifier) Close() error { return v.rc.Close() }
