package code

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/faasplane/faas/clock"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The helpers of the cache, tiered and fake tests carry a "ct" prefix so
// that they cannot collide with other test files of the package.

// ctBytes returns n deterministic bytes that differ with seed.
func ctBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// ctClock is a manual clock.
type ctClock struct {
	mu sync.Mutex
	t  time.Time
}

func newCTClock() *ctClock { return &ctClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *ctClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// The cache reads only the time; timers are real.
func (c *ctClock) NewTimer(d time.Duration) clock.Timer   { return clock.System().NewTimer(d) }
func (c *ctClock) NewTicker(d time.Duration) clock.Ticker { return clock.System().NewTicker(d) }
func (c *ctClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return clock.System().AfterFunc(d, f)
}

func (c *ctClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func ctReadAll(t *testing.T, s Store, ref Ref) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), ref)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func TestFakeStoreServesAndCounts(t *testing.T) {
	f := newFakeStore()
	data := ctBytes(100, 1)
	ref := f.Add(data)
	require.NoError(t, ref.Validate())
	assert.Equal(t, DigestOf(data), ref.Digest)
	assert.True(t, f.Has(ref.Digest))

	assert.Equal(t, data, ctReadAll(t, f, ref))
	_, err := f.Open(context.Background(), RefFor("fake:///x", ctBytes(10, 2)))
	require.ErrorIs(t, err, ErrNotFound)

	assert.Equal(t, fakeStats{Opens: 2, Hits: 1, Misses: 1}, f.Stats())
	assert.True(t, f.Remove(ref.Digest))
	assert.False(t, f.Remove(ref.Digest))
	_, err = f.Open(context.Background(), ref)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestFakeStoreInjectsErrorsAndLatency(t *testing.T) {
	f := newFakeStore()
	ref := f.Add(ctBytes(10, 1))
	boom := errors.New("boom")
	f.SetHook(func(context.Context, Ref) error { return boom })
	_, err := f.Open(context.Background(), ref)
	require.ErrorIs(t, err, boom)
	f.SetHook(nil)

	// Latency honours the context: a cancelled Open returns at once.
	f.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.Open(ctx, ref)
	require.ErrorIs(t, err, context.Canceled)
	f.SetLatency(0)
	assert.Equal(t, ctBytes(10, 1), ctReadAll(t, f, ref))
}

func TestFakeStorePutRawServesBadBytesThatVerifyReaderCatches(t *testing.T) {
	f := newFakeStore()
	good := ctBytes(64, 1)
	ref := RefFor("fake:///p", good)
	f.PutRaw(ref.Digest, ctBytes(64, 2))
	rc, err := f.Open(context.Background(), ref)
	require.NoError(t, err)
	_, err = io.ReadAll(VerifyReader(rc, ref))
	require.ErrorIs(t, err, ErrDigestMismatch)
}

func TestFakeStorePutVerifies(t *testing.T) {
	f := newFakeStore()
	data := ctBytes(50, 3)
	ref := RefFor("", data)
	require.ErrorIs(t, f.Put(context.Background(), ref, bytes.NewReader(ctBytes(50, 4))), ErrDigestMismatch)
	require.ErrorIs(t, f.Put(context.Background(), ref, bytes.NewReader(append(data, 0))), ErrSizeMismatch)
	require.ErrorIs(t, f.Put(context.Background(), Ref{Digest: "sha256:nope", Size: 1}, bytes.NewReader(nil)), ErrInvalidRef)
	assert.False(t, f.Has(ref.Digest))
	require.NoError(t, f.Put(context.Background(), ref, bytes.NewReader(data)))
	assert.True(t, f.Has(ref.Digest))
	assert.EqualValues(t, 1, f.Stats().Puts)
}
