package fnbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"testing"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildPackages(t *testing.T) {
	dir := t.TempDir()
	fns, err := BuildPackages(context.Background(), dir, "hello", "sleep")
	require.NoError(t, err)
	require.Len(t, fns, 2)
	fn := fns["hello"]
	require.NoError(t, fn.Ref.Validate())
	onDisk, err := os.ReadFile(fn.Path)
	require.NoError(t, err)
	assert.Equal(t, fn.Bytes, onDisk)
	assert.Equal(t, "file://"+fn.Path, fn.Ref.URI)
	assert.Equal(t, code.DigestOf(onDisk), fn.Ref.Digest)

	zr, err := gzip.NewReader(bytes.NewReader(onDisk))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	names := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names[h.Name] = h.Mode
	}
	assert.Equal(t, int64(0o755), names["hello"])
	assert.Contains(t, names, "faas.json")
}

func TestBuildFailsClearly(t *testing.T) {
	_, err := BuildAll(context.Background(), t.TempDir(), "./does/not/exist")
	require.ErrorContains(t, err, "go build")
}

func TestPackBinaryRejectsBadManifest(t *testing.T) {
	bin := t.TempDir() + "/x"
	require.NoError(t, os.WriteFile(bin, []byte("x"), 0o755))
	_, err := PackBinary(bin, "x", code.Manifest{Protocol: "smtp"}, t.TempDir())
	require.ErrorIs(t, err, code.ErrBadManifest)
}
