package code_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/stretchr/testify/require"
)

// memStore serves packages from memory through a plain io.Reader (not a
// file), so Unpack has to spool.
type memStore map[string][]byte

func (m memStore) Open(_ context.Context, ref code.Ref) (io.ReadCloser, error) {
	b, ok := m[ref.URI]
	if !ok {
		return nil, code.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestUnpack(t *testing.T) {
	archive := pkgTarGz(t, pkgEntry{Name: "faas.json", Body: `{"command":"./run"}`}, pkgEntry{Name: "run", Body: "#!/bin/sh\n", Mode: 0o755})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.tar.gz"), archive, 0o644))
	ds, err := code.NewDirStore(dir)
	require.NoError(t, err)
	defer ds.Close()
	mem := memStore{"mem://p": archive}

	for name, c := range map[string]struct {
		st   code.Store
		uri  string
		opts code.UnpackOptions
	}{
		"file":            {ds, ds.URI("p.tar.gz"), code.UnpackOptions{}},
		"memory":          {mem, "mem://p", code.UnpackOptions{}},
		"spooled":         {mem, "mem://p", code.UnpackOptions{SpoolMemory: 10}},
		"spool elsewhere": {mem, "mem://p", code.UnpackOptions{SpoolMemory: 10, SpoolDir: t.TempDir()}},
	} {
		t.Run(name, func(t *testing.T) {
			work := t.TempDir()
			dst := filepath.Join(work, "fn")
			require.NoError(t, os.Mkdir(dst, 0o755))
			st, err := code.Unpack(context.Background(), c.st, code.RefFor(c.uri, archive), dst, c.opts)
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
	ds, err := code.NewDirStore(dir)
	require.NoError(t, err)
	defer ds.Close()
	mem := memStore{"mem://p": archive}

	wrongDigest := code.RefFor(ds.URI("p.tar.gz"), archive)
	wrongDigest.Digest = code.DigestOf([]byte("something else"))
	shortRef := code.RefFor("mem://p", archive)
	shortRef.Size--
	longRef := code.RefFor("mem://p", archive)
	longRef.Size++
	memWrong := code.RefFor("mem://p", archive)
	memWrong.Digest = wrongDigest.Digest

	for name, c := range map[string]struct {
		st   code.Store
		ref  code.Ref
		want error
	}{
		"file digest":   {ds, wrongDigest, code.ErrDigestMismatch},
		"memory digest": {mem, memWrong, code.ErrDigestMismatch},
		"too long":      {mem, shortRef, code.ErrSizeMismatch},
		"too short":     {mem, longRef, code.ErrSizeMismatch},
		"not found":     {mem, code.RefFor("mem://nope", archive), code.ErrNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			_, err := code.Unpack(context.Background(), c.st, c.ref, dst, code.UnpackOptions{})
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
	origin, err := code.NewDirStore(dir)
	require.NoError(t, err)
	defer origin.Close()
	cache, err := code.NewDiskCache(code.CacheConfig{Dir: t.TempDir(), MaxBytes: 1 << 20}, origin)
	require.NoError(t, err)
	defer cache.Close()

	ref := code.RefFor(origin.URI("p.tar.gz"), archive)
	for range 2 {
		dst := t.TempDir()
		_, err := code.Unpack(context.Background(), cache, ref, dst, code.UnpackOptions{})
		require.NoError(t, err)
		require.Equal(t, []string{"faas.json", "run"}, pkgTree(t, dst))
	}
	require.Equal(t, int64(1), cache.Stats().Hits)
}
