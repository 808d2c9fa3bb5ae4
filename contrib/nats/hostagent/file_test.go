package hostagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

var token = strings.Repeat("t", lifecycle.MinControlTokenLen)

func TestParsePods(t *testing.T) {
	pod := func(fields string) string {
		return `{"pods":[{"id":"p1","node":"n1","control":{"addr":"127.0.0.1:9","token":"` + token + `"}` + fields + `}]}`
	}
	for _, tc := range []struct {
		name, data string
		err        string
	}{
		{"minimal", pod(""), ""},
		{"full", pod(`,"addr":"10.0.0.1:80","runtime":"go","labels":{"a":"b"}`), ""},
		{"empty list", `{"pods":[]}`, ""},
		{"no id", `{"pods":[{"node":"n1","control":{"addr":"127.0.0.1:9","token":"` + token + `"}}]}`, "invalid id"},
		{"duplicate", `{"pods":[` + pod("")[9:len(pod(""))-2] + `,` + pod("")[9:len(pod(""))-2] + `]}`, "duplicate id"},
		{"bad node", strings.Replace(pod(""), `"n1"`, `"n 1"`, 1), "invalid node"},
		{"bad control addr", strings.Replace(pod(""), "127.0.0.1:9", "nowhere", 1), "control.addr"},
		{"short token", strings.Replace(pod(""), token, "short", 1), "control.token"},
		{"bad addr", pod(`,"addr":"x"`), "addr is not"},
		{"unknown field", pod(`,"ip":"1.2.3.4"`), "unknown field"},
		{"trailing", pod("") + "[]", "data after"},
		{"not JSON", "pods", "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, err := ParsePods([]byte(tc.data))
			if tc.err != "" {
				require.ErrorIs(t, err, ErrBadPodsFile)
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if len(pods) > 0 {
				assert.Equal(t, lifecycle.Control{Addr: "127.0.0.1:9", Token: token}, pods[0].Control)
			}
		})
	}
}

func TestWritePodsAndFileLister(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pods.json")
	pods := []warmpool.Pod{
		{ID: "p2", Node: "n1", Addr: "127.0.0.1:2", Control: lifecycle.Control{Addr: "127.0.0.1:3", Token: token}, Runtime: "go"},
		{ID: "p1", Node: "n2", Control: lifecycle.Control{Addr: "127.0.0.1:4", Token: token}, Labels: map[string]string{"k": "v"}},
	}
	require.NoError(t, WritePods(path, pods))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	got, err := FileLister{Path: path}.List(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []warmpool.Pod{pods[1], pods[0]}, got, "sorted by ID")

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = FileLister{Path: path}.List(t.Context())
	require.ErrorIs(t, err, ErrBadPodsFile)
	assert.ErrorContains(t, err, "chmod 600")

	_, err = FileLister{Path: filepath.Join(t.TempDir(), "missing")}.List(t.Context())
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Error(t, WritePods(path, []warmpool.Pod{{ID: "bad id"}}), "WritePods writes nothing ParsePods refuses")
}

// FuzzParsePods: ParsePods never panics, and what it accepts is valid and
// survives WritePods.
func FuzzParsePods(f *testing.F) {
	f.Add([]byte(`{"pods":[{"id":"p1","node":"n1","control":{"addr":"127.0.0.1:9","token":"` + token + `"}}]}`))
	f.Add([]byte(`{"pods":[{"id":"p1","node":"n1","addr":"[::1]:80","control":{"addr":"h:1","token":"` + token + `"},"labels":{"":""}}]}`))
	f.Add([]byte(`{"pods":null}`))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		pods, err := ParsePods(data)
		if err != nil {
			return
		}
		path := filepath.Join(dir, "pods.json")
		if err := WritePods(path, pods); err != nil {
			t.Fatalf("accepted pods do not write: %v", err)
		}
		again, err := FileLister{Path: path}.List(t.Context())
		if err != nil || len(again) != len(pods) {
			t.Fatalf("round trip: %v, %d pods → %d", err, len(pods), len(again))
		}
	})
}
