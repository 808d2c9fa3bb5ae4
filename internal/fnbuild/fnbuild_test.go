package fnbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildPackage(t *testing.T) {
	dir := t.TempDir()
	fn, err := BuildPackage(context.Background(), "github.com/faasplane/faas/examples/functions/hello", "hello", dir)
	require.NoError(t, err)
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
	_, err := Build(context.Background(), "./does/not/exist", t.TempDir(), "x")
	require.ErrorContains(t, err, "go build")
}

func TestPackRejectsBadManifest(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(bin, []byte("x"), 0o755))
	_, err := Pack(bin, "f", code.Manifest{Protocol: "spdy"}, gzip.BestSpeed)
	require.Error(t, err)
}
