package code

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseManifest(t *testing.T) {
	cases := []struct {
		name  string
		json  string
		field string // "" means valid
	}{
		{"minimal", `{"command":"./hello"}`, ""},
		{"full", `{"command":"bin/hello","args":["-v"],"env":{"A":"1"},"protocol":"h2c","init_path":"/init","runtime":"go"}`, ""},
		{"no init", `{"command":"hello","no_init":true}`, ""},
		{"absolute command", `{"command":"/usr/bin/python3","args":["main.py"]}`, ""},
		{"no command", `{}`, ""}, // valid here; Resolve requires one
		{"unknown field", `{"comand":"x"}`, "unknown field"},
		{"not an object", `[1]`, "malformed"},
		{"trailing", `{"command":"x"} {}`, "trailing"},
		{"command dot-dot", `{"command":"../x"}`, "command"},
		{"command nested dot-dot", `{"command":"a/../../x"}`, "command"},
		{"command backslash", `{"command":"a\\b"}`, "command"},
		{"protocol", `{"command":"x","protocol":"grpc"}`, "protocol"},
		{"init path relative", `{"command":"x","init_path":"init"}`, "init_path"},
		{"init path space", `{"command":"x","init_path":"/a b"}`, "init_path"},
		{"init path dot-dot", `{"command":"x","init_path":"/a/../b"}`, "init_path"},
		{"env PORT", `{"command":"x","env":{"PORT":"1"}}`, "env"},
		{"env name", `{"command":"x","env":{"A=B":"1"}}`, "env"},
		{"arg NUL", `{"command":"x","args":["a\u0000"]}`, "args[0]"},
		{"too large", `{"command":"` + strings.Repeat("x", 70<<10) + `"}`, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(c.json))
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadManifest)
			require.ErrorIs(t, err, ErrBadPackage)
			require.NotErrorIs(t, err, errUnsafePath)
			require.Contains(t, err.Error(), c.field)
			var me *ManifestError
			require.True(t, errors.As(err, &me))
		})
	}
}

func TestManifestInitHookPath(t *testing.T) {
	require.Equal(t, "/_faas/init", (&Manifest{}).InitHookPath())
	require.Equal(t, "/x", (&Manifest{InitPath: "/x"}).InitHookPath())
	require.Equal(t, "", (&Manifest{InitPath: "/x", NoInit: true}).InitHookPath())
}

func TestReadManifest(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadManifest(dir)
	require.ErrorIs(t, err, ErrNoManifest)
	require.ErrorIs(t, err, ErrBadManifest)

	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestName), []byte(`{"command":"./run"}`), 0o644))
	m, err := ReadManifest(dir)
	require.NoError(t, err)
	require.Equal(t, "./run", m.Command)

	// A manifest that is a symlink out of the package is not followed.
	outside := filepath.Join(t.TempDir(), "m.json")
	require.NoError(t, os.WriteFile(outside, []byte(`{"command":"./run"}`), 0o644))
	dir2 := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(dir2, ManifestName)))
	_, err = ReadManifest(dir2)
	require.ErrorIs(t, err, ErrBadManifest)
	require.NotErrorIs(t, err, ErrNoManifest)
}

func TestManifestResolve(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "run"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644))
	outside := filepath.Join(t.TempDir(), "tool")
	require.NoError(t, os.WriteFile(outside, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "escape")))

	resolve := func(cmd string) (string, error) {
		m := Manifest{Command: cmd}
		return m.Resolve(dir, exec.LookPath)
	}
	p, err := resolve("bin/run")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "bin/run"), p)
	p, err = resolve("./bin/run")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "bin/run"), p)
	p, err = resolve("sh") // bare name from PATH
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(p))
	p, err = resolve("/bin/sh")
	require.NoError(t, err)
	require.Equal(t, "/bin/sh", p)

	for _, bad := range []string{"", "data", "bin", "escape", "bin/missing", "no-such-program-faas", "../x"} {
		_, err := resolve(bad)
		require.ErrorIs(t, err, ErrBadManifest, bad)
	}
	m := Manifest{Command: "sh"}
	_, err = m.Resolve(dir, nil)
	require.ErrorIs(t, err, ErrBadManifest, "no PATH lookup without lookPath")
}
