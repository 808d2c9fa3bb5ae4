package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

// harness is one agent under test with its origin directory of packages.
type harness struct {
	t      testing.TB
	agent  *Agent
	addr   string            // the invocation listener
	ctl    lifecycle.Control // the control listener and the pod's token
	origin string            // directory served as file://
	work   string
	logs   *logRecorder
	client *lifecycle.Client
	http   *http.Client
}

type tarEntry struct {
	name, body string
	mode       int64
	typ        byte
	link       string
}

func tarGz(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	return tarGzLevel(t, gzip.BestSpeed, entries...)
}

func tarGzLevel(t testing.TB, level int, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, level)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Mode: mode, Typeflag: typ, Linkname: e.link}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		require.NoError(t, tw.WriteHeader(hdr))
		_, err := io.WriteString(tw, e.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// binPackage returns a .tar.gz with the built function fn and a manifest.
// It is built once per (fn, manifest), and stored uncompressed (gzip
// level 0, still a valid .tar.gz): compressing and decompressing a binary
// under -race takes seconds, and the tests are about the agent, not about
// gzip.
func binPackage(t testing.TB, fn, manifest string) []byte {
	t.Helper()
	key := fn + "\x00" + manifest
	if b, ok := packages.Load(key); ok {
		return b.([]byte)
	}
	bin, err := os.ReadFile(filepath.Join(binDir, fn))
	require.NoError(t, err)
	b := tarGzLevel(t, gzip.NoCompression, tarEntry{name: "faas.json", body: manifest}, tarEntry{name: fn, body: string(bin), mode: 0o755})
	packages.Store(key, b)
	return b
}

var packages sync.Map

func newHarness(t testing.TB, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, origin: t.TempDir(), work: filepath.Join(t.TempDir(), "work"), logs: newLogRecorder()}
	store, err := code.NewDirStore(h.origin)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	cfg := Config{Store: store, WorkDir: h.work, Runtime: "go", Node: "node-1", Logger: slog.New(h.logs), StopGrace: 2 * time.Second,
		ControlToken: lifecycle.NewControlToken()}
	if edit != nil {
		edit(&cfg)
	}
	h.agent, err = New(cfg)
	require.NoError(t, err)
	lns, err := Listen(Addrs{Invoke: "127.0.0.1:0", Control: "127.0.0.1:0"})
	require.NoError(t, err)
	h.addr = lns.Invoke.Addr().String()
	h.ctl = lifecycle.Control{Addr: lns.Control.Addr().String(), Token: cfg.ControlToken}
	served := make(chan error, 1)
	go func() { served <- h.agent.Serve(context.Background(), lns) }()
	tr := &http.Transport{}
	h.http = &http.Client{Transport: tr}
	h.client, err = lifecycle.NewClient(lifecycle.ClientConfig{HTTPClient: &http.Client{Transport: tr}})
	require.NoError(t, err)
	t.Cleanup(func() {
		st := h.agent.Status()
		require.NoError(t, h.agent.Close())
		require.NoError(t, <-served)
		tr.CloseIdleConnections()
		if st.PID != 0 {
			requireReaped(t, st.PID)
		}
	})
	return h
}

// publish writes a package into the origin and returns its wire reference.
func (h *harness) publish(name string, pkg []byte) lifecycle.CodeRef {
	h.t.Helper()
	require.NoError(h.t, os.WriteFile(filepath.Join(h.origin, name), pkg, 0o644))
	ref := code.RefFor("file://"+filepath.Join(h.origin, name), pkg)
	return lifecycle.CodeRef{URI: ref.URI, Digest: ref.Digest, Size: ref.Size}
}

func (h *harness) load(id string, ref lifecycle.CodeRef, edit func(*lifecycle.LoadRequest)) (lifecycle.LoadResponse, error) {
	req := lifecycle.LoadRequest{FunctionID: id, Code: ref, Runtime: "go", Limits: lifecycle.Limits{Concurrency: 4}}
	if edit != nil {
		edit(&req)
	}
	return h.client.Load(context.Background(), h.ctl, req)
}

// loadReady loads fn's binary as function id and initializes it.
func (h *harness) loadReady(id, fn, manifest string, edit func(*lifecycle.LoadRequest)) lifecycle.LoadResponse {
	h.t.Helper()
	resp, err := h.load(id, h.publish(fn+".tar.gz", binPackage(h.t, fn, manifest)), edit)
	require.NoError(h.t, err)
	_, err = h.client.Initialize(context.Background(), h.ctl, lifecycle.InitializeRequest{FunctionID: id})
	require.NoError(h.t, err)
	return resp
}

type invokeResult struct {
	status int
	body   string
	header http.Header
}

// invoke sends a request to the invocation listener.
func (h *harness) invoke(ctx context.Context, id, method, path, body string) (invokeResult, error) {
	return h.send(ctx, h.addr, method, path, body, func(hd http.Header) {
		if id != "" {
			hd.Set(lifecycle.HeaderFunctionID, id)
		}
	})
}

// control sends a request to the control listener, presenting token.
func (h *harness) control(ctx context.Context, token, method, path, body string) (invokeResult, error) {
	return h.send(ctx, h.ctl.Addr, method, path, body, func(hd http.Header) {
		if token != "" {
			wire.SetControlToken(hd, token)
		}
	})
}

func (h *harness) send(ctx context.Context, addr, method, path, body string, header func(http.Header)) (invokeResult, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return invokeResult{}, err
	}
	header(req.Header)
	req.Header.Set(lifecycle.HeaderRequestID, "req-42")
	resp, err := h.http.Do(req)
	if err != nil {
		return invokeResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return invokeResult{resp.StatusCode, string(b), resp.Header}, err
}

func (h *harness) mustInvoke(id, path string) invokeResult {
	h.t.Helper()
	r, err := h.invoke(context.Background(), id, "GET", path, "")
	require.NoError(h.t, err)
	return r
}

// requireError checks a protocol error response: status, code and the
// three headers.
func requireError(t *testing.T, r invokeResult, code lifecycle.ErrorCode) {
	t.Helper()
	require.Equal(t, code.Status(), r.status, "body: %s", r.body)
	require.Equal(t, string(code), r.header.Get(lifecycle.HeaderErrorCode))
	require.NotEmpty(t, r.header.Get(lifecycle.HeaderErrorMessage))
	require.Equal(t, "req-42", r.header.Get(lifecycle.HeaderRequestID))
}

// requireGone checks that pid no longer runs: it does not exist, or it is a
// zombie waiting for init to reap it (a grandchild of the agent).
func requireGone(t testing.TB, pid int) {
	t.Helper()
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return
	}
	stat, rerr := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if rerr == nil {
		// The state follows the parenthesized command name.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
	}
	t.Fatalf("process %d still runs (kill 0: %v)", pid, err)
}

func mustListen(t *testing.T) Listeners {
	t.Helper()
	lns, err := Listen(Addrs{Invoke: "127.0.0.1:0", Control: "127.0.0.1:0"})
	require.NoError(t, err)
	return lns
}

// requireReaped checks that pid, a child of this process, is gone and was
// reaped: no zombie left behind.
func requireReaped(t testing.TB, pid int) {
	t.Helper()
	err := syscall.Kill(pid, 0)
	require.ErrorIs(t, err, syscall.ESRCH, "process %d still exists (a zombie if it exited)", pid)
}
