package code

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func ctNewCache(t *testing.T, dir string, maxBytes int64, next Store, clock *ctClock) *DiskCache {
	t.Helper()
	cfg := CacheConfig{Dir: dir, MaxBytes: maxBytes}
	if clock != nil {
		cfg.Clock = clock
	}
	c, err := NewDiskCache(cfg, next)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ctBlobs lists the digests of the package files in dir.
func ctBlobs(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		out = append(out, DigestPrefix+de.Name())
	}
	return out
}

func ctTemps(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "tmp"))
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestNewDiskCacheRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  CacheConfig
	}{
		{"no dir", CacheConfig{MaxBytes: 1}},
		{"zero budget", CacheConfig{Dir: dir}},
		{"negative budget", CacheConfig{Dir: dir, MaxBytes: -1}},
		{"negative timeout", CacheConfig{Dir: dir, MaxBytes: 1, FetchTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewDiskCache(tt.cfg, nil)
			require.Error(t, err)
			assert.Nil(t, c)
		})
	}
}

func TestDiskCacheMissFetchesThenHits(t *testing.T) {
	origin := newFakeStore()
	data := ctBytes(1000, 1)
	ref := origin.Add(data)
	dir := t.TempDir()
	c := ctNewCache(t, dir, 1<<20, origin, nil)

	assert.False(t, c.Has(ref.Digest))
	assert.Equal(t, data, ctReadAll(t, c, ref))
	assert.Equal(t, CacheStats{Misses: 1, Entries: 1, Bytes: 1000}, c.Stats())
	assert.Equal(t, data, ctReadAll(t, c, ref))
	assert.Equal(t, CacheStats{Hits: 1, Misses: 1, Entries: 1, Bytes: 1000}, c.Stats())
	assert.EqualValues(t, 1, origin.Stats().Opens, "a hit does not reach the origin")

	// Content-addressed: another URI with the same digest hits.
	other := ref
	other.URI = "https://elsewhere.example/x.tar.gz"
	assert.Equal(t, data, ctReadAll(t, c, other))
	assert.True(t, c.Has(ref.Digest))
	assert.Equal(t, []string{ref.Digest}, c.Digests())
	assert.Equal(t, []string{ref.Digest}, ctBlobs(t, dir))
	assert.Empty(t, ctTemps(t, dir), "no temporary file is left behind")
}

func TestDiskCacheBadInputCachesNothing(t *testing.T) {
	good := ctBytes(100, 1)
	goodRef := RefFor("fake:///good", good)
	tests := []struct {
		name  string
		ref   Ref
		serve []byte // what the origin serves under ref.Digest; nil: nothing
		want  error
	}{
		{"no digest", Ref{URI: "fake:///x", Size: 100}, nil, ErrInvalidRef},
		{"uppercase digest", Ref{URI: "fake:///x", Digest: "sha256:" + string(bytes.Repeat([]byte("A"), 64)), Size: 1}, nil, ErrInvalidRef},
		{"zero size", Ref{URI: "fake:///x", Digest: goodRef.Digest}, nil, ErrInvalidRef},
		{"not found", goodRef, nil, ErrNotFound},
		{"digest mismatch", goodRef, ctBytes(100, 2), ErrDigestMismatch},
		{"more bytes than declared", goodRef, append(bytes.Clone(good), 'x'), ErrSizeMismatch},
		{"fewer bytes than declared", goodRef, good[:99], ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := newFakeStore()
			if tt.serve != nil {
				origin.PutRaw(tt.ref.Digest, tt.serve)
			}
			dir := t.TempDir()
			c := ctNewCache(t, dir, 1<<20, origin, nil)
			rc, err := c.Open(context.Background(), tt.ref)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, rc)
			assert.Empty(t, c.Digests())
			assert.Empty(t, ctBlobs(t, dir))
			assert.Empty(t, ctTemps(t, dir))
			assert.Zero(t, c.Stats().Bytes)
		})
	}
}

func TestDiskCacheEvictsLeastRecentlyUsed(t *testing.T) {
	origin := newFakeStore()
	var refs []Ref
	for i := range 4 {
		refs = append(refs, origin.Add(ctBytes(100, byte(i))))
	}
	dir := t.TempDir()
	c := ctNewCache(t, dir, 300, origin, nil)
	for _, r := range refs[:3] {
		ctReadAll(t, c, r)
	}
	ctReadAll(t, c, refs[0]) // refs[1] is now the least recently used
	ctReadAll(t, c, refs[3])

	assert.False(t, c.Has(refs[1].Digest))
	want := []string{refs[0].Digest, refs[2].Digest, refs[3].Digest}
	slices.Sort(want)
	assert.Equal(t, want, c.Digests())
	assert.ElementsMatch(t, want, ctBlobs(t, dir), "the evicted file is deleted")
	s := c.Stats()
	assert.EqualValues(t, 1, s.Evictions)
	assert.EqualValues(t, 300, s.Bytes)

	// An evicted package is fetched again.
	assert.Equal(t, ctBytes(100, 1), ctReadAll(t, c, refs[1]))
	assert.EqualValues(t, 5, origin.Stats().Opens)
}

func TestDiskCachePackageLargerThanBudgetIsStreamedUncached(t *testing.T) {
	origin := newFakeStore()
	data := ctBytes(500, 1)
	ref := origin.Add(data)
	dir := t.TempDir()
	c := ctNewCache(t, dir, 100, origin, nil)
	assert.Equal(t, data, ctReadAll(t, c, ref))
	assert.Empty(t, ctBlobs(t, dir))
	require.ErrorIs(t, c.Put(context.Background(), ref, bytes.NewReader(data)), ErrTooLarge)

	// Streamed packages are still verified.
	origin.PutRaw(ref.Digest, ctBytes(500, 2))
	rc, err := c.Open(context.Background(), ref)
	require.NoError(t, err)
	_, err = io.ReadAll(rc)
	require.ErrorIs(t, err, ErrDigestMismatch)
	require.NoError(t, rc.Close())
}

func TestDiskCacheSizeConflictIsAnError(t *testing.T) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(100, 1))
	c := ctNewCache(t, t.TempDir(), 1000, origin, nil)
	ctReadAll(t, c, ref)
	bad := ref
	bad.Size = 50
	_, err := c.Open(context.Background(), bad)
	require.ErrorIs(t, err, ErrSizeMismatch)
}

func TestDiskCachePersistsUsageHistory(t *testing.T) {
	clock := newCTClock()
	origin := newFakeStore()
	var refs []Ref
	for i := range 3 {
		refs = append(refs, origin.Add(ctBytes(100, byte(i))))
	}
	dir := t.TempDir()
	c1, err := NewDiskCache(CacheConfig{Dir: dir, MaxBytes: 1000, Clock: clock}, origin)
	require.NoError(t, err)
	for _, r := range refs {
		clock.Advance(time.Minute)
		ctReadAll(t, c1, r)
	}
	clock.Advance(time.Minute)
	ctReadAll(t, c1, refs[0]) // order, oldest first: 1, 2, 0
	ctReadAll(t, c1, refs[0])
	require.NoError(t, c1.Close())
	require.NoError(t, c1.Close(), "Close is idempotent")

	// Make the files' modification times disagree with the history, so
	// that only the history can give the right order.
	for i, r := range refs {
		mt := clock.Now().Add(-time.Duration(i) * time.Hour)
		require.NoError(t, os.Chtimes(filepath.Join(dir, "blobs", "sha256", r.Digest[7:]), mt, mt))
	}

	// A budget of two packages: the least recently used (refs[1]) goes.
	c2 := ctNewCache(t, dir, 200, nil, clock)
	want := []string{refs[0].Digest, refs[2].Digest}
	slices.Sort(want)
	assert.Equal(t, want, c2.Digests())
	assert.EqualValues(t, 1, c2.Stats().Evictions)
	c2.mu.Lock()
	e, ok := c2.lru.Peek(refs[0].Digest)
	c2.mu.Unlock()
	require.True(t, ok)
	assert.EqualValues(t, 2, e.hits, "hits survive a restart")
	assert.True(t, e.lastUse.Equal(clock.Now()))
	// The adopted packages are served without a next store.
	assert.Equal(t, ctBytes(100, 2), ctReadAll(t, c2, refs[2]))
}

func TestDiskCacheIgnoresDamagedHistoryAndForeignFiles(t *testing.T) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(100, 1))
	dir := t.TempDir()
	c1 := ctNewCache(t, dir, 1000, origin, nil)
	ctReadAll(t, c1, ref)
	require.NoError(t, c1.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.json"), []byte("{garbage"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blobs", "sha256", "not-a-digest"), []byte("x"), 0o644))

	c2 := ctNewCache(t, dir, 1000, nil, nil)
	assert.Equal(t, []string{ref.Digest}, c2.Digests())
}

func TestDiskCacheRemovesStaleTemporaryFiles(t *testing.T) {
	clock := newCTClock()
	dir := t.TempDir()
	c1 := ctNewCache(t, dir, 1000, nil, clock)
	require.NoError(t, c1.Close())
	stale := filepath.Join(dir, "tmp", "stale.tmp")
	fresh := filepath.Join(dir, "tmp", "fresh.tmp")
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(fresh, []byte("x"), 0o644))
	old := clock.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(stale, old, old))
	require.NoError(t, os.Chtimes(fresh, clock.Now(), clock.Now()))

	ctNewCache(t, dir, 1000, nil, clock)
	assert.NoFileExists(t, stale)
	assert.FileExists(t, fresh, "a young temporary file may be another process's fetch")
}

func TestDiskCacheSharedDirectoryAcrossInstances(t *testing.T) {
	origin1, origin2 := newFakeStore(), newFakeStore()
	data := ctBytes(100, 7)
	ref := origin1.Add(data)
	origin2.Add(data)
	dir := t.TempDir()
	c1 := ctNewCache(t, dir, 1000, origin1, nil)
	c2 := ctNewCache(t, dir, 1000, origin2, nil)
	c3 := ctNewCache(t, dir, 1000, origin2, nil)

	ctReadAll(t, c1, ref)
	assert.Equal(t, data, ctReadAll(t, c2, ref))
	assert.Zero(t, origin2.Stats().Opens, "the second process adopts the first one's file")
	assert.True(t, c2.Has(ref.Digest))
	assert.EqualValues(t, 1, c2.Stats().Hits)

	// The first process deletes the file (say, evicts it). The second one
	// still reads the file it holds open; the third, which never opened
	// it, fetches it again.
	require.NoError(t, os.Remove(filepath.Join(dir, "blobs", "sha256", ref.Digest[7:])))
	assert.Equal(t, data, ctReadAll(t, c2, ref))
	assert.Equal(t, data, ctReadAll(t, c3, ref))
	assert.EqualValues(t, 1, origin2.Stats().Opens)
}

func TestDiskCacheDamagedFileIsNeverServed(t *testing.T) {
	for _, open := range []int{-1, 64} {
		t.Run(fmt.Sprintf("MaxOpenFiles=%d", open), func(t *testing.T) {
			origin := newFakeStore()
			data := ctBytes(100, 7)
			ref := origin.Add(data)
			dir := t.TempDir()
			c, err := NewDiskCache(CacheConfig{Dir: dir, MaxBytes: 1000, MaxOpenFiles: open}, origin)
			require.NoError(t, err)
			defer c.Close()
			ctReadAll(t, c, ref)
			require.NoError(t, os.Truncate(filepath.Join(dir, "blobs", "sha256", ref.Digest[7:]), 10))
			// A file kept open notices while reading; one opened anew
			// notices at open and is fetched again. Either way the
			// damaged copy is dropped and the next Open is whole.
			if rc, err := c.Open(context.Background(), ref); err == nil {
				got, err := io.ReadAll(rc)
				if err == nil {
					assert.Equal(t, data, got)
				} else {
					require.ErrorIs(t, err, ErrSizeMismatch)
				}
				require.NoError(t, rc.Close())
			}
			assert.Equal(t, data, ctReadAll(t, c, ref))
			assert.EqualValues(t, 2, origin.Stats().Opens)
		})
	}
}

func TestDiskCacheReaderSeeksAndReadsAt(t *testing.T) {
	origin := newFakeStore()
	data := ctBytes(1000, 3)
	ref := origin.Add(data)
	c := ctNewCache(t, t.TempDir(), 10000, origin, nil)
	ctReadAll(t, c, ref)
	rc, err := c.Open(context.Background(), ref)
	require.NoError(t, err)
	r := rc.(interface {
		io.ReadSeekCloser
		io.ReaderAt
	})
	buf := make([]byte, 10)
	n, err := r.ReadAt(buf, 995)
	assert.Equal(t, 5, n)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, data[995:], buf[:5])
	_, err = r.Seek(-10, io.SeekEnd)
	require.NoError(t, err)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, data[990:], rest)
	_, err = r.Seek(-1, io.SeekStart)
	require.Error(t, err)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	_, err = r.Read(buf)
	require.Error(t, err)
}

func TestDiskCacheCollapsesConcurrentMisses(t *testing.T) {
	defer goleak.VerifyNone(t)
	origin := newFakeStore()
	data := ctBytes(4096, 1)
	ref := origin.Add(data)
	release := make(chan struct{})
	origin.SetHook(func(ctx context.Context, _ Ref) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	c, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, origin)
	require.NoError(t, err)
	defer c.Close()

	const n = 16
	var wg sync.WaitGroup
	results := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			rc, err := c.Open(context.Background(), ref)
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			results[i], errs[i] = io.ReadAll(rc)
		})
	}
	// Every caller has missed; the one fetch is blocked in the origin, so
	// the others either wait for it or find the package once it is in.
	require.Eventually(t, func() bool { return c.Stats().Misses == n }, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, data, results[i])
	}
	assert.EqualValues(t, 1, origin.Stats().Opens)
}

func TestDiskCacheCloseStopsFetches(t *testing.T) {
	defer goleak.VerifyNone(t)
	origin := newFakeStore()
	ref := origin.Add(ctBytes(100, 1))
	entered := make(chan struct{})
	origin.SetHook(func(ctx context.Context, _ Ref) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	c, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1000}, origin)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := c.Open(context.Background(), ref)
		done <- err
	}()
	<-entered
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-done, context.Canceled)
	_, err = c.Open(context.Background(), ref)
	require.ErrorIs(t, err, ErrStoreClosed)
}

func TestDiskCacheCallerContextBoundsItsWait(t *testing.T) {
	defer goleak.VerifyNone(t)
	origin := newFakeStore()
	ref := origin.Add(ctBytes(100, 1))
	release := make(chan struct{})
	origin.SetHook(func(ctx context.Context, _ Ref) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	c, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1000}, origin)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Open(ctx, ref)
	require.ErrorIs(t, err, context.Canceled)
	// The fetch goes on for others and is admitted.
	close(release)
	require.Eventually(t, func() bool { return c.Has(ref.Digest) }, 10*time.Second, time.Millisecond)
}

func TestDiskCachePreload(t *testing.T) {
	defer goleak.VerifyNone(t)
	origin := newFakeStore()
	var refs []Ref
	for i := range 6 {
		refs = append(refs, origin.Add(ctBytes(100, byte(i))))
	}
	missing := RefFor("fake:///missing", ctBytes(10, 99))
	c, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 10000}, origin)
	require.NoError(t, err)
	defer c.Close()
	err = c.Preload(context.Background(), append(refs, missing, Ref{})...)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, err, ErrInvalidRef)
	for _, r := range refs {
		assert.True(t, c.Has(r.Digest))
	}
	assert.Equal(t, CacheStats{Entries: 6, Bytes: 600}, c.Stats(), "preloading counts neither hits nor misses")
	require.NoError(t, c.Preload(context.Background(), refs...))
	assert.EqualValues(t, 7, origin.Stats().Opens, "a second preload fetches nothing")

	noNext := ctNewCache(t, t.TempDir(), 100, nil, nil)
	require.ErrorIs(t, noNext.Preload(context.Background(), refs[0]), ErrNotFound)
}

// TestDiskCacheRandomOperations checks the cache's invariants under random
// opens, puts and restarts: the budget holds, the index matches the files,
// and every Open returns the package's exact bytes.
func TestDiskCacheRandomOperations(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	origin := newFakeStore()
	var refs []Ref
	for i := range 20 {
		refs = append(refs, origin.Add(ctBytes(1+rng.IntN(300), byte(i))))
	}
	dir := t.TempDir()
	const budget = 1000
	c := ctNewCache(t, dir, budget, origin, nil)
	for step := range 2000 {
		r := refs[rng.IntN(len(refs))]
		switch op := rng.IntN(20); {
		case op == 0:
			require.NoError(t, c.Close())
			c = ctNewCache(t, dir, budget, origin, nil)
		case op < 4:
			data := ctBytes(int(r.Size), byte(slices.Index(refs, r)))
			require.NoError(t, c.Put(context.Background(), r, bytes.NewReader(data)))
		default:
			got := ctReadAll(t, c, r)
			require.Equal(t, r.Digest, DigestOf(got), "step %d", step)
		}
		s := c.Stats()
		require.LessOrEqual(t, s.Bytes, int64(budget))
		require.ElementsMatch(t, c.Digests(), ctBlobs(t, dir), "step %d", step)
		var sum int64
		for _, d := range c.Digests() {
			i := slices.IndexFunc(refs, func(r Ref) bool { return r.Digest == d })
			sum += refs[i].Size
		}
		require.Equal(t, sum, s.Bytes)
	}
}
