package code

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

type ctTiers struct {
	local  *DiskCache
	shared *fakeStore
	origin *fakeStore
	t      *Tiered
}

func ctNewTiers(t *testing.T, budget int64) ctTiers {
	t.Helper()
	local := ctNewCache(t, t.TempDir(), budget, nil, nil)
	shared, origin := newFakeStore(), newFakeStore()
	tt, err := NewTiered(TieredConfig{Tiers: []Store{local, shared, origin}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tt.Close() })
	return ctTiers{local, shared, origin, tt}
}

func TestNewTieredRejectsBadConfig(t *testing.T) {
	f := newFakeStore()
	tests := []struct {
		name string
		cfg  TieredConfig
	}{
		{"no tiers", TieredConfig{}},
		{"one tier", TieredConfig{Tiers: []Store{f}}},
		{"nil tier", TieredConfig{Tiers: []Store{f, nil}}},
		{"first tier not a putter", TieredConfig{Tiers: []Store{StoreFunc(f.Open), f}}},
		{"negative timeout", TieredConfig{Tiers: []Store{f, f}, FetchTimeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewTiered(tt.cfg)
			require.Error(t, err)
			assert.Nil(t, s)
		})
	}
}

func TestTieredMissFillsTheTiersAbove(t *testing.T) {
	x := ctNewTiers(t, 1<<20)
	data := ctBytes(1000, 1)
	ref := x.origin.Add(data)

	assert.Equal(t, data, ctReadAll(t, x.t, ref))
	assert.True(t, x.local.Has(ref.Digest), "the local cache is filled")
	assert.True(t, x.shared.Has(ref.Digest), "the shared cache is filled")
	assert.Equal(t, TieredStats{Hits: []int64{0, 0, 1}, Fetches: 1}, x.t.Stats())

	// Next time the local tier serves it.
	assert.Equal(t, data, ctReadAll(t, x.t, ref))
	assert.EqualValues(t, 1, x.origin.Stats().Opens)
	assert.Equal(t, []int64{1, 0, 1}, x.t.Stats().Hits)

	// A shared-cache hit fills only the local tier.
	data2 := ctBytes(500, 2)
	ref2 := x.shared.Add(data2)
	assert.Equal(t, data2, ctReadAll(t, x.t, ref2))
	assert.True(t, x.local.Has(ref2.Digest))
	assert.False(t, x.origin.Has(ref2.Digest))
	assert.EqualValues(t, 1, x.t.Stats().Hits[1])
}

func TestTieredBadInput(t *testing.T) {
	good := ctBytes(100, 1)
	ref := RefFor("fake:///p", good)
	t.Run("no digest", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		_, err := x.t.Open(context.Background(), Ref{URI: "fake:///p", Size: 100})
		require.ErrorIs(t, err, ErrInvalidRef)
	})
	t.Run("not found anywhere", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		_, err := x.t.Open(context.Background(), ref)
		require.ErrorIs(t, err, ErrNotFound)
	})
	t.Run("mismatch at the only tier that has it", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		x.origin.PutRaw(ref.Digest, ctBytes(100, 2))
		_, err := x.t.Open(context.Background(), ref)
		require.ErrorIs(t, err, ErrDigestMismatch)
		assert.False(t, x.local.Has(ref.Digest))
		assert.False(t, x.shared.Has(ref.Digest))
		assert.EqualValues(t, 1, x.t.Stats().Rejected)
	})
	t.Run("more bytes than declared", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		x.origin.PutRaw(ref.Digest, append(bytes.Clone(good), good...))
		_, err := x.t.Open(context.Background(), ref)
		require.ErrorIs(t, err, ErrSizeMismatch)
		assert.Empty(t, x.local.Digests())
	})
	t.Run("bad shared tier is skipped for the origin", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		x.shared.PutRaw(ref.Digest, ctBytes(100, 3))
		x.origin.PutRaw(ref.Digest, good)
		assert.Equal(t, good, ctReadAll(t, x.t, ref))
		assert.EqualValues(t, 1, x.t.Stats().Rejected)
		// The shared tier lies above the origin, so its bad copy is
		// replaced by the verified one.
		assert.Equal(t, good, ctReadAll(t, x.shared, ref))
	})
	t.Run("failing shared tier is skipped", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		x.shared.SetHook(func(context.Context, Ref) error { return errors.New("shared cache down") })
		x.origin.PutRaw(ref.Digest, good)
		assert.Equal(t, good, ctReadAll(t, x.t, ref))
	})
	t.Run("errors of every tier are reported", func(t *testing.T) {
		x := ctNewTiers(t, 1<<20)
		boom := errors.New("shared cache down")
		x.shared.SetHook(func(context.Context, Ref) error { return boom })
		_, err := x.t.Open(context.Background(), ref)
		require.ErrorIs(t, err, boom)
		require.ErrorIs(t, err, ErrNotFound)
	})
}

func TestTieredUnverifiedFirstTierIsVerified(t *testing.T) {
	top, origin := newFakeStore(), newFakeStore()
	good := ctBytes(100, 1)
	ref := RefFor("fake:///p", good)
	top.PutRaw(ref.Digest, ctBytes(100, 2)) // a corrupt first tier
	s, err := NewTiered(TieredConfig{Tiers: []Store{top, origin}})
	require.NoError(t, err)
	defer s.Close()
	rc, err := s.Open(context.Background(), ref)
	require.NoError(t, err)
	_, err = io.ReadAll(rc)
	require.ErrorIs(t, err, ErrDigestMismatch)
}

func TestTieredPackageTooLargeForTheLocalTierIsStreamed(t *testing.T) {
	x := ctNewTiers(t, 100)
	data := ctBytes(1000, 1)
	ref := x.origin.Add(data)
	assert.Equal(t, data, ctReadAll(t, x.t, ref))
	assert.False(t, x.local.Has(ref.Digest))
}

func TestTieredCollapsesConcurrentFetches(t *testing.T) {
	defer goleak.VerifyNone(t)
	local, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, nil)
	require.NoError(t, err)
	defer local.Close()
	// The first tier counts its misses, so that the test knows when every
	// caller is past it.
	var mu sync.Mutex
	topMisses := 0
	top := &ctCountingPutter{Putter: local, onMiss: func() { mu.Lock(); topMisses++; mu.Unlock() }}
	origin := newFakeStore()
	data := ctBytes(8192, 9)
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
	s, err := NewTiered(TieredConfig{Tiers: []Store{top, origin}})
	require.NoError(t, err)
	defer s.Close()

	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			rc, err := s.Open(context.Background(), ref)
			if err != nil {
				errs[i] = err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		})
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return topMisses >= n }, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, origin.Stats().Opens, "one fetch for all concurrent misses")
}

type ctCountingPutter struct {
	Putter
	onMiss func()
}

func (p *ctCountingPutter) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	rc, err := p.Putter.Open(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		p.onMiss()
	}
	return rc, err
}

func (p *ctCountingPutter) Has(digest string) bool { return p.Putter.(*DiskCache).Has(digest) }

func TestTieredCloseStopsFetches(t *testing.T) {
	defer goleak.VerifyNone(t)
	local, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, nil)
	require.NoError(t, err)
	defer local.Close()
	origin := newFakeStore()
	ref := origin.Add(ctBytes(10, 1))
	entered := make(chan struct{})
	origin.SetHook(func(ctx context.Context, _ Ref) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	s, err := NewTiered(TieredConfig{Tiers: []Store{local, origin}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := s.Open(context.Background(), ref)
		done <- err
	}()
	<-entered
	require.NoError(t, s.Close())
	require.ErrorIs(t, <-done, context.Canceled)
	_, err = s.Open(context.Background(), ref)
	require.ErrorIs(t, err, ErrStoreClosed)
}

func TestTieredReadersAreVerifiedOrFromAVerifiedTier(t *testing.T) {
	x := ctNewTiers(t, 1<<20)
	ref := x.origin.Add(ctBytes(100, 1))
	var _ verifiedStore = x.t
	ctReadAll(t, x.t, ref) // fills the local tier
	rc, err := x.t.Open(context.Background(), ref)
	require.NoError(t, err)
	defer rc.Close()
	_, isReaderAt := rc.(io.ReaderAt)
	assert.True(t, isReaderAt, "a local hit is the cache's own reader: no second hash needed")

	// An unverified first tier is wrapped: not a ReaderAt, checked at EOF.
	top, origin := newFakeStore(), newFakeStore()
	ref2 := RefFor("", ctBytes(10, 2))
	top.PutRaw(ref2.Digest, ctBytes(10, 3))
	s, err := NewTiered(TieredConfig{Tiers: []Store{top, origin}})
	require.NoError(t, err)
	defer s.Close()
	rc2, err := s.Open(context.Background(), ref2)
	require.NoError(t, err)
	defer rc2.Close()
	_, isReaderAt = rc2.(io.ReaderAt)
	assert.False(t, isReaderAt)
}
