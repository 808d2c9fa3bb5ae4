package code

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// memStore serves packages from memory through a plain io.Reader (not a
// file), so Unpack has to spool.
type memStore map[string][]byte

func (m memStore) Open(_ context.Context, ref Ref) (io.ReadCloser, error) {
	b, ok := m[ref.URI]
	if !ok {
		return nil, ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestUnpack(t *testing.T) {
	archive := pkgTarGz(t, pkgEntry{Name: "faas.json", Body: `{"command":"./run"}`}, pkgEntry{Name: "run", Body: "#!/bin/sh\n", Mode: 0o755})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.tar.gz"), archive, 0o644))
	ds, err := NewDirStore(dir)
	require.NoError(t, err)
	defer ds.Close()
	mem := memStore{"mem://p": archive}

	for name, c := range map[string]struct {
		st   Store
		uri  string
		opts UnpackOptions
	}{
		"file":            {ds, ds.URI("p.tar.gz"), UnpackOptions{}},
		"memory":          {mem, "mem://p", UnpackOptions{}},
		"spooled":         {mem, "mem://p", UnpackOptions{SpoolMemory: 10}},
		"spool elsewhere": {mem, "mem://p", UnpackOptions{SpoolMemory: 10, SpoolDir: t.TempDir()}},
	} {
		t.Run(name, func(t *testing.T) {
			work := t.TempDir()
			dst := filepath.Join(work, "fn")
			require.NoError(t, os.Mkdir(dst, 0o755))
			st, err := Unpack(context.Background(), c.st, RefFor(c.uri, archive), dst, c.opts)
			require.NoError(t, err)
			require.Equal(t, 2, st.Entries)
			require.Equal(t, []string{"faas.json", "run"}, pkgTree(t, dst))
			require.Equal(t, []string{"fn/", "fn/faas.json", "fn/run"}, pkgTree(t, work), "spool file removed")
		})
	}
}

// TestUnpackVerifiesBeforeExtracting: a package with the wrong digest or
// size writes nothing at all.
func TestUnpackVerifiesBeforeExtracting(t *testing.T) {
	archive := pkgTarGz(t, pkgEntry{Name: "run", Body: "x"})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.tar.gz"), archive, 0o644))
	ds, err := NewDirStore(dir)
	require.NoError(t, err)
	defer ds.Close()
	mem := memStore{"mem://p": archive}

	wrongDigest := RefFor(ds.URI("p.tar.gz"), archive)
	wrongDigest.Digest = DigestOf([]byte("something else"))
	shortRef := RefFor("mem://p", archive)
	shortRef.Size--
	longRef := RefFor("mem://p", archive)
	longRef.Size++
	memWrong := RefFor("mem://p", archive)
	memWrong.Digest = wrongDigest.Digest

	for name, c := range map[string]struct {
		st   Store
		ref  Ref
		want error
	}{
		"file digest":   {ds, wrongDigest, ErrDigestMismatch},
		"memory digest": {mem, memWrong, ErrDigestMismatch},
		"too long":      {mem, shortRef, ErrSizeMismatch},
		"too short":     {mem, longRef, ErrSizeMismatch},
		"not found":     {mem, RefFor("mem://nope", archive), ErrNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			_, err := Unpack(context.Background(), c.st, c.ref, dst, UnpackOptions{})
			require.ErrorIs(t, err, c.want)
			require.Empty(t, pkgTree(t, dst))
		})
	}
}

// TestUnpackThroughDiskCache unpacks the same package twice through the
// node's disk cache: a miss that fills it from the origin, then a hit read
// through the cache's shared file.
func TestUnpackThroughDiskCache(t *testing.T) {
	archive := pkgTarGz(t, pkgEntry{Name: "faas.json", Body: `{"command":"./run"}`}, pkgEntry{Name: "run", Body: "#!/bin/sh\n", Mode: 0o755})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.tar.gz"), archive, 0o644))
	origin, err := NewDirStore(dir)
	require.NoError(t, err)
	defer origin.Close()
	cache, err := NewDiskCache(CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, origin)
	require.NoError(t, err)
	defer cache.Close()

	ref := RefFor(origin.URI("p.tar.gz"), archive)
	for range 2 {
		dst := t.TempDir()
		_, err := Unpack(context.Background(), cache, ref, dst, UnpackOptions{})
		require.NoError(t, err)
		require.Equal(t, []string{"faas.json", "run"}, pkgTree(t, dst))
	}
	require.Equal(t, int64(1), cache.Stats().Hits)
}
