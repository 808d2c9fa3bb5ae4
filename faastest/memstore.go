package faastest

import (
	"bytes"
	"context"
	"fmt"
	"github.com/faasplane/faas/coldstart/code"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// memStore is the in-memory code.Store and code.Putter inside a [CodeStore]:
// it serves packages from a map keyed by digest, can add latency and inject
// errors, and counts hits and misses. Unlike a real store it can also be told
// to serve bytes that do not match their reference (PutRaw), so
// that tests can check what the layers above do with bad data. It is safe for
// concurrent use.
type memStore struct {
	mu      sync.Mutex
	pkgs    map[string][]byte
	latency time.Duration
	hook    func(ctx context.Context, ref code.Ref) error

	opens, hits, misses, puts atomic.Int64
}

// CodeStoreCounts counts the calls of a CodeStore.
type CodeStoreCounts struct {
	// Opens counts every call to Open.
	Opens int64
	// Hits counts Opens that returned a reader; Misses those that
	// returned an error wrapping code.ErrNotFound.
	Hits, Misses int64
	// Puts counts packages stored through Put.
	Puts int64
}

// newMemStore returns an empty memStore.
func newMemStore() *memStore {
	return &memStore{pkgs: make(map[string][]byte)}
}

// Add stores data and returns its code.Ref, whose URI is "fake:///" followed by
// the digest's hex part.
func (f *memStore) Add(data []byte) code.Ref {
	ref := code.RefFor("", data)
	ref.URI = "fake:///" + ref.Digest[len(code.DigestPrefix):]
	f.PutRaw(ref.Digest, data)
	return ref
}

// PutRaw stores data under digest without checking that they match, so that
// Open serves wrong bytes for that digest. Tests use it to play a corrupt or
// malicious store.
func (f *memStore) PutRaw(digest string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pkgs[digest] = bytes.Clone(data)
}

// Remove deletes the package with the given digest and reports whether it
// was there.
func (f *memStore) Remove(digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pkgs[digest]
	delete(f.pkgs, digest)
	return ok
}

// Has reports whether the store holds digest.
func (f *memStore) Has(digest string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pkgs[digest]
	return ok
}

// SetLatency makes every Open wait d (or until its context is done) before
// answering. Zero removes the latency.
func (f *memStore) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// SetHook installs a function called at the start of every Open, after the
// latency; when it returns an error, Open returns that error. Tests use it
// to inject failures or to block an Open on a channel. nil removes the hook.
func (f *memStore) SetHook(hook func(ctx context.Context, ref code.Ref) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Stats returns the store's counters.
func (f *memStore) Stats() CodeStoreCounts {
	return CodeStoreCounts{Opens: f.opens.Load(), Hits: f.hits.Load(), Misses: f.misses.Load(), Puts: f.puts.Load()}
}

// Open serves the bytes stored under ref.Digest as they are, without
// verifying them (like any code.Store; readers wrap it in [code.VerifyReader]).
func (f *memStore) Open(ctx context.Context, ref code.Ref) (io.ReadCloser, error) {
	f.opens.Add(1)
	f.mu.Lock()
	latency, hook := f.latency, f.hook
	f.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if hook != nil {
		if err := hook(ctx, ref); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	data, ok := f.pkgs[ref.Digest]
	f.mu.Unlock()
	if !ok {
		f.misses.Add(1)
		return nil, fmt.Errorf("%w: %s in fake store", code.ErrNotFound, ref.Digest)
	}
	f.hits.Add(1)
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Put reads a package from r, verifies it against ref and stores it; a
// package that does not match is not stored.
func (f *memStore) Put(ctx context.Context, ref code.Ref, r io.Reader) error {
	if err := ref.Validate(); err != nil {
		return err
	}
	data, err := io.ReadAll(code.VerifyReader(io.NopCloser(r), ref))
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.PutRaw(ref.Digest, data)
	f.puts.Add(1)
	return nil
}
