package agent

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// requireNothingLeft checks that a failed load left the agent generic, with
// nothing in its work directory.
func (h *harness) requireNothingLeft() {
	h.t.Helper()
	_, err := h.client.Ping(context.Background(), h.ctl)
	require.ErrorIs(h.t, err, lifecycle.CodeNoFunction)
	des, err := os.ReadDir(h.work)
	require.NoError(h.t, err)
	require.Empty(h.t, des, "work directory after a failed load")
}

// TestLoadRejectsMaliciousPackages loads hostile packages through the
// agent: each fails with bad_package naming its own cause, nothing is
// written outside the work directory, and the pod stays usable.
func TestLoadRejectsMaliciousPackages(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Limits = code.Limits{MaxFiles: 5} })
	outside := t.TempDir()
	cases := []struct {
		name    string
		pkg     []byte
		message string
	}{
		{"absolute path", tarGz(t, tarEntry{name: filepath.Join(outside, "abs"), body: "x"}), "unsafe path"},
		{"dot-dot", tarGz(t, tarEntry{name: "../../escape", body: "x"}), "unsafe path"},
		{"symlink escapes", tarGz(t, tarEntry{name: "l", typ: tar.TypeSymlink, link: outside}), "unsafe link"},
		{"write through symlink", tarGz(t,
			tarEntry{name: "d/", typ: tar.TypeDir},
			tarEntry{name: "l", typ: tar.TypeSymlink, link: "d"},
			tarEntry{name: "l/x", body: "x"}), "unsafe path"},
		{"hard link escapes", tarGz(t, tarEntry{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}), "unsafe link"},
		{"device", tarGz(t, tarEntry{name: "null", typ: tar.TypeChar}), "special file"},
		{"fifo", tarGz(t, tarEntry{name: "p", typ: tar.TypeFifo}), "special file"},
		{"too many files", tarGz(t, tarEntry{name: "1"}, tarEntry{name: "2"}, tarEntry{name: "3"},
			tarEntry{name: "4"}, tarEntry{name: "5"}, tarEntry{name: "6"}), "too many files"},
		{"bomb", tarGz(t, tarEntry{name: "zeros", body: strings.Repeat("\x00", 16<<20)}), "compression ratio"},
		{"not an archive", []byte("#!/bin/sh\n"), "unknown archive format"},
		{"bad manifest", tarGz(t, tarEntry{name: "faas.json", body: `{"comand": "x"}`}), "bad manifest"},
		{"no manifest", tarGz(t, tarEntry{name: "run", body: "x"}), "no faas.json"},
		{"command leaves package", tarGz(t, tarEntry{name: "faas.json", body: `{"command": "../../bin/sh"}`}), "leaves the package"},
		{"command missing", tarGz(t, tarEntry{name: "faas.json", body: `{"command": "./nope"}`}), "command"},
		{"wrong runtime", tarGz(t, tarEntry{name: "faas.json", body: `{"command": "x", "runtime": "python3.12"}`}), "runtime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := h.publish("evil.tar.gz", c.pkg)
			_, err := h.load("evil", ref, nil)
			require.ErrorIs(t, err, lifecycle.CodeBadPackage)
			require.ErrorContains(t, err, c.message)
			h.requireNothingLeft()
			des, err := os.ReadDir(outside)
			require.NoError(t, err)
			require.Empty(t, des, "written outside the work directory")
		})
	}

	t.Run("digest mismatch", func(t *testing.T) {
		ref := h.publish("p.tar.gz", tarGz(t, tarEntry{name: "faas.json", body: helloManifest}))
		ref.Digest = code.DigestOf([]byte("other bytes"))
		_, err := h.load("p", ref, nil)
		require.ErrorIs(t, err, lifecycle.CodeBadPackage)
		require.ErrorContains(t, err, "digest mismatch")
		h.requireNothingLeft()
	})
	t.Run("size mismatch", func(t *testing.T) {
		ref := h.publish("p.tar.gz", tarGz(t, tarEntry{name: "faas.json", body: helloManifest}))
		ref.Size++
		_, err := h.load("p", ref, nil)
		require.ErrorIs(t, err, lifecycle.CodeBadPackage)
		require.ErrorContains(t, err, "size mismatch")
		h.requireNothingLeft()
	})

	// After all that, the pod still loads a good function.
	h.loadReady("hello", "hello", helloManifest, nil)
	require.Equal(t, 200, h.mustInvoke("hello", "/").status)
}

func TestLoadFailures(t *testing.T) {
	h := newHarness(t, nil)
	pkg := binPackage(t, "hello", helloManifest)
	ref := h.publish("hello.tar.gz", pkg)

	missing := ref
	missing.URI = "file://" + filepath.Join(h.origin, "missing.tar.gz")
	_, err := h.load("f", missing, nil)
	require.ErrorIs(t, err, lifecycle.CodeCodeFetch)
	h.requireNothingLeft()

	other := ref
	other.URI = "s3://bucket/key"
	_, err = h.load("f", other, nil)
	require.ErrorIs(t, err, lifecycle.CodeCodeFetch)

	_, err = h.load("f", ref, func(r *lifecycle.LoadRequest) { r.Runtime = "python3.12" })
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)
	require.ErrorContains(t, err, "runtime")

	_, err = h.load("f", ref, func(r *lifecycle.LoadRequest) { r.Limits.Concurrency = DefaultMaxConcurrency + 1 })
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)

	_, err = h.load("f", ref, func(r *lifecycle.LoadRequest) { r.Env = map[string]string{"PORT": "80"} })
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)
	require.ErrorContains(t, err, "PORT")

	// A process that exits at once.
	_, err = h.load("f", ref, func(r *lifecycle.LoadRequest) { r.Command = "/bin/sh"; r.Args = []string{"-c", "exit 3"} })
	require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
	require.ErrorContains(t, err, "exited before listening")
	h.requireNothingLeft()

	// A process that never listens: killed when the start timeout ends.
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err = h.load("f", ref, func(r *lifecycle.LoadRequest) {
		r.Command = "/bin/sh"
		r.Args = []string{"-c", "echo $$ > " + pidFile + "; exec sleep 600"}
		r.StartTimeoutMillis = 300
	})
	require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
	require.ErrorContains(t, err, "did not listen")
	h.requireNothingLeft()
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	requireReaped(t, pid)
	require.NotEmpty(t, h.logs.find("load failed", "function_id=f"))

	// The pod is still good for a real load.
	lr, err := h.load("hello", ref, nil)
	require.NoError(t, err)
	require.Positive(t, lr.PID)
}

func TestConcurrentLoadsOneWins(t *testing.T) {
	h := newHarness(t, nil)
	ref := h.publish("hello.tar.gz", binPackage(t, "hello", helloManifest))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = h.load("hello", ref, nil) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, lifecycle.CodeAlreadyLoaded)
		}
	}
	require.Equal(t, 1, ok)
}

// blockingStore blocks every Open until ctx is done, to catch a load in
// flight.
type blockingStore struct{ entered chan struct{} }

func (b blockingStore) Open(ctx context.Context, ref code.Ref) (io.ReadCloser, error) {
	close(b.entered)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCloseAbortsALoadInProgress(t *testing.T) {
	entered := make(chan struct{})
	h := newHarness(t, func(c *Config) { c.Store = blockingStore{entered}; c.StopGrace = 50e6 })
	done := make(chan error, 1)
	go func() {
		_, err := h.load("f", lifecycle.CodeRef{URI: "file:///x", Digest: code.DigestOf(nil), Size: 1}, nil)
		done <- err
	}()
	<-entered
	_, err := h.client.Ping(context.Background(), h.ctl)
	require.ErrorIs(t, err, lifecycle.CodeNotReady, "ping during a load")
	require.NoError(t, h.agent.Close())
	require.Error(t, <-done)
	des, err := os.ReadDir(h.work)
	require.NoError(t, err)
	require.Empty(t, des)
}

func TestEndpointMethods(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", lifecycle.PathLoad}, {"GET", lifecycle.PathInitialize},
		{"POST", lifecycle.PathPing}, {"DELETE", lifecycle.PathStats},
	} {
		r, err := h.control(context.Background(), h.ctl.Token, c.method, c.path, "")
		require.NoError(t, err)
		requireError(t, r, lifecycle.CodeMethodNotAllowed)
	}
	r, err := h.control(context.Background(), h.ctl.Token, "POST", lifecycle.PathLoad, "{not json")
	require.NoError(t, err)
	requireError(t, r, lifecycle.CodeBadRequest)
	_, err = h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: "f"})
	require.ErrorIs(t, err, lifecycle.CodeNoFunction)
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Empty(t, st.FunctionID)
	require.Positive(t, st.Uptime)
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	store := code.StoreFunc(func(context.Context, code.Ref) (io.ReadCloser, error) { return nil, errors.New("x") })
	tok := lifecycle.NewControlToken()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{WorkDir: dir, Runtime: "go", ControlToken: tok}, "Store"},
		{Config{Store: store, Runtime: "go", ControlToken: tok}, "WorkDir"},
		{Config{Store: store, WorkDir: dir, ControlToken: tok}, "Runtime"},
		{Config{Store: store, WorkDir: dir, Runtime: "go"}, "ControlToken"},
		{Config{Store: store, WorkDir: dir, Runtime: "go", ControlToken: "short"}, "ControlToken"},
		{Config{Store: store, WorkDir: dir, Runtime: "go", ControlToken: tok, StopGrace: -1}, "negative"},
		{Config{Store: store, WorkDir: dir, Runtime: "go", ControlToken: tok, MaxConcurrency: -1}, "negative"},
	} {
		_, err := New(c.cfg)
		require.ErrorContains(t, err, c.want)
	}
	a, err := New(Config{Store: store, WorkDir: filepath.Join(dir, "new", "work"), Runtime: "go", ControlToken: tok})
	require.NoError(t, err)
	require.DirExists(t, filepath.Join(dir, "new", "work"))
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "idempotent")
}
