package code

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCacheIndex(t *testing.T) {
	d1 := DigestOf([]byte("one"))
	d2 := DigestOf([]byte("two"))
	tests := []struct {
		name    string
		in      string
		want    map[string]cacheEntry
		wantErr bool
	}{
		{"empty object", `{}`, nil, true},
		{"not json", `{`, nil, true},
		{"wrong version", `{"version":2,"entries":[]}`, nil, true},
		{"no entries", `{"version":1}`, map[string]cacheEntry{}, false},
		{"good entry", `{"version":1,"entries":[{"digest":"` + d1 + `","size":3,"hits":2,"last_use":"2026-01-02T03:04:05Z"}]}`,
			map[string]cacheEntry{d1: {size: 3, hits: 2, lastUse: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}, false},
		{"bad entries skipped", `{"version":1,"entries":[` +
			`{"digest":"sha256:zz","size":3},` +
			`{"digest":"` + d1 + `","size":0},` +
			`{"digest":"` + d1 + `","size":3,"hits":-1},` +
			`{"digest":"` + d2 + `","size":3,"hits":1}]}`,
			map[string]cacheEntry{d2: {size: 3, hits: 1}}, false},
		{"duplicate: last used wins", `{"version":1,"entries":[` +
			`{"digest":"` + d1 + `","size":3,"hits":9,"last_use":"2026-01-02T00:00:00Z"},` +
			`{"digest":"` + d1 + `","size":3,"hits":1,"last_use":"2026-01-01T00:00:00Z"}]}`,
			map[string]cacheEntry{d1: {size: 3, hits: 9, lastUse: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCacheIndex([]byte(tt.in))
			if tt.wantErr {
				require.ErrorIs(t, err, errBadCacheIndex)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	defer func(old int) { maxCacheIndexBytes = old }(maxCacheIndexBytes)
	maxCacheIndexBytes = 1 << 10
	_, err := parseCacheIndex(bytes.Repeat([]byte(" "), maxCacheIndexBytes+1))
	require.ErrorIs(t, err, errBadCacheIndex)
}

func TestCacheIndexRoundTrip(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	digests := []string{DigestOf([]byte("a")), DigestOf([]byte("b"))}
	entries := []cacheEntry{{size: 1, hits: 3, lastUse: now}, {size: 2, lastUse: now.Add(time.Second)}}
	data, err := encodeCacheIndex(digests, entries)
	require.NoError(t, err)
	got, err := parseCacheIndex(data)
	require.NoError(t, err)
	assert.Equal(t, map[string]cacheEntry{digests[0]: entries[0], digests[1]: entries[1]}, got)
}

func TestDiskCacheIgnoresOversizedHistory(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(int64(maxCacheIndexBytes)+1)) // sparse: nothing is written
	require.NoError(t, f.Close())
	c := ctNewCache(t, dir, 100, nil, nil)
	assert.Empty(t, c.Digests())
}

// FuzzParseCacheIndex feeds the usage-history parser arbitrary files (the
// directory may be shared with other processes, or damaged): it must never
// panic, and whatever it accepts must be valid entries.
func FuzzParseCacheIndex(f *testing.F) {
	d := DigestOf([]byte("x"))
	f.Add([]byte(`{"version":1,"entries":[{"digest":"` + d + `","size":1,"hits":1,"last_use":"2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"version":1,"entries":null}`))
	f.Add([]byte(`{"version":1,"entries":[{"digest":1}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseCacheIndex(data)
		if err != nil {
			if got != nil {
				t.Fatalf("entries returned with error %v", err)
			}
			return
		}
		for digest, e := range got {
			if ValidDigest(digest) != nil || e.size <= 0 || e.hits < 0 {
				t.Fatalf("invalid entry accepted: %q %+v", digest, e)
			}
		}
	})
}

func TestDiskCacheDropsFilesDamagedWhileStopped(t *testing.T) {
	origin := newFakeStore()
	ref := origin.Add(ctBytes(100, 1))
	dir := t.TempDir()
	c1 := ctNewCache(t, dir, 1000, origin, nil)
	ctReadAll(t, c1, ref)
	require.NoError(t, c1.Close())
	p := filepath.Join(dir, "blobs", "sha256", ref.Digest[7:])
	require.NoError(t, os.Truncate(p, 50))

	c2 := ctNewCache(t, dir, 1000, origin, nil)
	assert.Empty(t, c2.Digests(), "the history knows the size: the damaged file is dropped")
	assert.NoFileExists(t, p)
	assert.Equal(t, ctBytes(100, 1), ctReadAll(t, c2, ref))
}
