package code

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := os.FileMode(0o644)
		if filepath.Base(name) == "run" {
			mode = 0o700
		}
		require.NoError(t, os.WriteFile(p, []byte(body), mode))
	}
	return dir
}

func TestPackDirRoundTripsAndIsReproducible(t *testing.T) {
	dir := writeTree(t, map[string]string{
		ManifestName:     `{"command": "./run"}`,
		"run":            "#!/bin/sh\n",
		"lib/data.txt":   "data",
		"lib/deep/x.bin": "\x00\x01",
	})
	require.NoError(t, os.Symlink("lib/data.txt", filepath.Join(dir, "data")))
	a, err := PackDir(dir)
	require.NoError(t, err)
	// Times and modes of the tree do not change the package.
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "lib", "data.txt"), old, old))
	require.NoError(t, os.Chmod(filepath.Join(dir, "lib", "data.txt"), 0o600))
	b, err := PackDir(dir)
	require.NoError(t, err)
	require.Equal(t, DigestOf(a), DigestOf(b), "reproducible")

	out := t.TempDir()
	_, err = extract(context.Background(), bytes.NewReader(a), int64(len(a)), out, Limits{})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(out, "data"))
	require.NoError(t, err)
	require.Equal(t, "data", string(got), "the symlink resolves inside")
	fi, err := os.Stat(filepath.Join(out, "run"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), "executables stay executable")
	m, err := ReadManifest(out)
	require.NoError(t, err)
	require.Equal(t, "./run", m.Command)
}

func TestPackDirRefusesWhatTheAgentWould(t *testing.T) {
	noManifest := writeTree(t, map[string]string{"run": "x"})
	_, err := PackDir(noManifest)
	require.ErrorIs(t, err, ErrNoManifest)

	badManifest := writeTree(t, map[string]string{ManifestName: `{"command": "./run", "protocol": "smtp"}`})
	_, err = PackDir(badManifest)
	require.ErrorIs(t, err, ErrBadManifest)

	escaping := writeTree(t, map[string]string{ManifestName: `{"command": "./run"}`})
	require.NoError(t, os.Symlink("../../etc/passwd", filepath.Join(escaping, "leak")))
	_, err = PackDir(escaping)
	require.ErrorContains(t, err, "leaves the package")

	absolute := writeTree(t, map[string]string{ManifestName: `{"command": "./run"}`})
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(absolute, "leak")))
	_, err = PackDir(absolute)
	require.ErrorContains(t, err, "leaves the package")

	fifo := writeTree(t, map[string]string{ManifestName: `{"command": "./run"}`})
	require.NoError(t, syscall.Mkfifo(filepath.Join(fifo, "pipe"), 0o644))
	_, err = PackDir(fifo)
	require.ErrorContains(t, err, "not a regular file")
}

func TestPackGoBuildsARunnablePackage(t *testing.T) {
	pkg, err := PackGo(context.Background(), "github.com/faasplane/faas/examples/functions/hello", Manifest{Env: map[string]string{"A": "1"}})
	require.NoError(t, err)
	out := t.TempDir()
	_, err = extract(context.Background(), bytes.NewReader(pkg), int64(len(pkg)), out, Limits{})
	require.NoError(t, err)
	m, err := ReadManifest(out)
	require.NoError(t, err)
	require.Equal(t, Manifest{Command: "./function", Env: map[string]string{"A": "1"}}, m)
	fi, err := os.Stat(filepath.Join(out, "function"))
	require.NoError(t, err)
	require.NotZero(t, fi.Mode().Perm()&0o100)

	_, err = PackGo(context.Background(), "github.com/faasplane/faas/no/such/package", Manifest{})
	require.ErrorContains(t, err, "go build")
}
