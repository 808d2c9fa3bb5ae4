package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "faas-agent-cmd-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		for name, pkg := range map[string]string{
			"faas-agent": "github.com/faasplane/faas/cmd/faas-agent",
			"hello":      "github.com/faasplane/faas/examples/functions/hello",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n", name, err)
				return 1
			}
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// helloPackage writes hello.tar.gz into dir and returns its reference.
func helloPackage(t *testing.T, dir string) lifecycle.CodeRef {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(binDir, "hello"))
	require.NoError(t, err)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name, body string
		mode       int64
	}{{"faas.json", `{"command":"./hello"}`, 0o644}, {"hello", string(bin), 0o755}} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}))
		_, err := io.WriteString(tw, f.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	p := filepath.Join(dir, "hello.tar.gz")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	ref := code.RefFor("file://"+p, buf.Bytes())
	return lifecycle.CodeRef{URI: ref.URI, Digest: ref.Digest, Size: ref.Size}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type agentProc struct {
	cmd    *exec.Cmd
	addr   string            // invocations
	ctl    lifecycle.Control // control
	stderr *syncBuffer
	done   chan error
}

// parseAnnounce reads the announced addresses: invocations, then control.
func parseAnnounce(t *testing.T, line string) (invoke, control string) {
	t.Helper()
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), ListeningPrefix+" ")
	require.True(t, ok, "first line %q", line)
	invoke, control, ok = strings.Cut(rest, " ")
	require.True(t, ok, "two addresses in %q", line)
	return invoke, control
}

// startAgent runs the faas-agent binary, hands it a control token on its
// standard input, and reads the addresses it announces.
func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	token := lifecycle.NewControlToken()
	cmd := exec.Command(filepath.Join(binDir, "faas-agent"),
		append([]string{"-listen", "127.0.0.1:0", "-control-listen", "127.0.0.1:0", "-control-token-file", "-"}, args...)...)
	cmd.Stdin = strings.NewReader(token + "\n")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &agentProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "stderr: %s", p.stderr.String())
	var control string
	p.addr, control = parseAnnounce(t, line)
	p.ctl = lifecycle.Control{Addr: control, Token: token}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func requireGone(t *testing.T, pid int) {
	t.Helper()
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return // a zombie waiting for init: killed
	}
	t.Fatalf("process %d still runs", pid)
}

func TestBinaryServesTheProtocolAndStopsOnSIGTERM(t *testing.T) {
	work, cache, origin := t.TempDir(), t.TempDir(), t.TempDir()
	p := startAgent(t, "-work-dir", work, "-code-cache-dir", cache, "-node", "n1", "-log-format", "json", "-log-level", "debug")
	ref := helloPackage(t, origin)
	c := new(lifecycle.Client)
	ctx := context.Background()

	_, err := c.Ping(ctx, p.ctl)
	require.ErrorIs(t, err, lifecycle.CodeNoFunction)
	lr, err := c.Load(ctx, p.ctl, lifecycle.LoadRequest{FunctionID: "hello", Code: ref, Runtime: "go"})
	require.NoError(t, err)
	_, err = c.Initialize(ctx, p.ctl, lifecycle.InitializeRequest{FunctionID: "hello"})
	require.NoError(t, err)
	ping, err := c.Ping(ctx, p.ctl)
	require.NoError(t, err)
	require.Equal(t, lifecycle.PingResponse{FunctionID: "hello", State: "ready", PID: lr.PID, Node: "n1"}, ping)

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/?name=bin", nil)
	req.Header.Set(lifecycle.HeaderFunctionID, "hello")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hello, bin\n", string(body))

	// The package landed in the node cache, the tree in the tree cache.
	pkgs, _ := filepath.Glob(filepath.Join(cache, "packages", "*", "*"))
	require.NotEmpty(t, pkgs)
	trees, _ := os.ReadDir(filepath.Join(cache, "trees"))
	require.Len(t, trees, 1)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.done, "exit status; stderr: %s", p.stderr.String())
	p.done <- nil // for the cleanup
	requireGone(t, lr.PID)
	des, err := os.ReadDir(work)
	require.NoError(t, err)
	require.Empty(t, des, "work directory cleaned")
	require.Contains(t, p.stderr.String(), `"msg":"function output"`)
	require.Contains(t, p.stderr.String(), `"function_id":"hello"`)
}

// TestKilledAgentTakesItsFunctionAlong: the kernel kills the function when
// the agent dies without stopping it (Linux parent-death signal).
func TestKilledAgentTakesItsFunctionAlong(t *testing.T) {
	p := startAgent(t, "-work-dir", t.TempDir())
	ref := helloPackage(t, t.TempDir())
	lr, err := new(lifecycle.Client).Load(context.Background(), p.ctl, lifecycle.LoadRequest{FunctionID: "hello", Code: ref, Runtime: "go"})
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(lr.PID, 0))
	require.NoError(t, p.cmd.Process.Kill())
	<-p.done
	p.done <- nil
	require.Eventually(t, func() bool {
		err := syscall.Kill(lr.PID, 0)
		if errors.Is(err, syscall.ESRCH) {
			return true
		}
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(lr.PID) + "/stat")
		i := bytes.LastIndexByte(stat, ')')
		return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
	}, 10*time.Second, time.Millisecond)
}

func TestRunInProcess(t *testing.T) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr syncBuffer
	tokenFile := filepath.Join(t.TempDir(), "token")
	token := lifecycle.NewControlToken()
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	args := []string{"-listen", "127.0.0.1:0", "-control-listen", "127.0.0.1:0", "-control-token-file", tokenFile}
	go func() { done <- run(ctx, args, strings.NewReader(""), pw, &stderr) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	invoke, control := parseAnnounce(t, line)
	_, err = new(lifecycle.Client).Ping(context.Background(), lifecycle.Control{Addr: control, Token: token})
	require.ErrorIs(t, err, lifecycle.CodeNoFunction)
	_, err = new(lifecycle.Client).Ping(context.Background(), lifecycle.Control{Addr: invoke, Token: token})
	require.ErrorIs(t, err, lifecycle.CodeBadRequest, "the invocation listener does not speak the protocol")
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, stderr.String(), "agent serving")
}

// TestTokenFromTheEnvironment: without -control-token-file the token comes
// from $FAAS_CONTROL_TOKEN, which the agent then removes from its
// environment, so that function processes never inherit it.
func TestTokenFromTheEnvironment(t *testing.T) {
	token := lifecycle.NewControlToken()
	t.Setenv(TokenEnv, token)
	got, err := controlToken(options{}, strings.NewReader(""))
	require.NoError(t, err)
	require.Equal(t, token, got)
	_, set := os.LookupEnv(TokenEnv)
	require.False(t, set)
	_, err = controlToken(options{}, strings.NewReader(""))
	require.ErrorContains(t, err, "no control token")
	_, err = controlToken(options{tokenFile: "-"}, strings.NewReader("short\n"))
	require.ErrorContains(t, err, "invalid control token")
	_, err = controlToken(options{tokenFile: "-"}, strings.NewReader(""))
	require.ErrorContains(t, err, "stdin")
}

func TestBadFlags(t *testing.T) {
	token := lifecycle.NewControlToken()
	for _, args := range [][]string{
		{"-log-level", "loud"},
		{"-log-format", "xml"},
		{"-code-cache-bytes", "0"},
		{"extra"},
		{"-nope"},
		{"-listen", "256.0.0.1:0", "-control-listen", "127.0.0.1:0"},
		{"-listen", "127.0.0.1:0", "-control-listen", "256.0.0.1:0"},
		{"-run-as", "nobody"},
		{"-control-token-file", "/nonexistent/token"},
		{"-bootstrap-mode", "warm"},
		{"-memory-limit", "lots"},
		{"-log-rate", "0"},
		{"-bootstrap", "builtin:cobol"},
	} {
		var stderr syncBuffer
		err := run(context.Background(), append([]string{"-control-token-file", "-"}, args...), strings.NewReader(token+"\n"), io.Discard, &stderr)
		require.Error(t, err, "%v", args)
	}
}

// TestBinaryHotLoadsAPythonFunction: with -runtime python the agent runs
// the shipped Python runtime's bootstrap from its start, and a load puts
// the function into it.
func TestBinaryHotLoadsAPythonFunction(t *testing.T) {
	work, origin := t.TempDir(), t.TempDir()
	p := startAgent(t, "-work-dir", work, "-runtime", "python", "-pod", "pod-9")
	pkg, err := code.PackDir("../../examples/functions/hello-py")
	require.NoError(t, err)
	path := filepath.Join(origin, "hello-py.tar.gz")
	require.NoError(t, os.WriteFile(path, pkg, 0o644))
	ref := code.RefFor("file://"+path, pkg)
	c := new(lifecycle.Client)
	ctx := context.Background()
	lr, err := c.Load(ctx, p.ctl, lifecycle.LoadRequest{FunctionID: "hello-py", Runtime: "python",
		Code: lifecycle.CodeRef{URI: ref.URI, Digest: ref.Digest, Size: ref.Size}})
	require.NoError(t, err, "stderr: %s", p.stderr.String())
	require.True(t, lr.HotLoad)
	_, err = c.Initialize(ctx, p.ctl, lifecycle.InitializeRequest{FunctionID: "hello-py"})
	require.NoError(t, err)

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/?name=python", nil)
	req.Header.Set(lifecycle.HeaderFunctionID, "hello-py")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hello, python\n", string(body))
	st, err := c.Stats(ctx, p.ctl)
	require.NoError(t, err)
	require.Equal(t, "pod-9", st.Instance)
	require.True(t, st.HotLoad)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.done, "exit status; stderr: %s", p.stderr.String())
	p.done <- nil
	requireGone(t, lr.PID)
}

func TestBootstrapFlag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, c := range []struct {
		bootstrap, runtime, mode string
		want                     string // the bootstrap's program's base name; "" for none
		args                     []string
		err                      string
	}{
		{bootstrap: "none", runtime: "python"},
		{bootstrap: "auto", runtime: "go"},
		{bootstrap: "auto", runtime: "python", want: "python3", args: []string{"-u", filepath.Join(dir, ".runtime", "python", "bootstrap.py")}},
		{bootstrap: "builtin:node", runtime: "node-exec", mode: "exec", want: "node", args: []string{filepath.Join(dir, ".runtime", "node", "bootstrap.js")}},
		{bootstrap: "builtin:java", runtime: "java", err: "no shipped runtime"},
		{bootstrap: "/opt/ruby/bin/ruby boot.rb -w", runtime: "ruby", want: "ruby", args: []string{"boot.rb", "-w"}},
	} {
		o := options{bootstrap: c.bootstrap, runtime: c.runtime, bootstrapMode: cmp.Or(c.mode, "hot"), workDir: dir}
		b, err := bootstrapFor(ctx, o)
		if c.err != "" {
			require.ErrorContains(t, err, c.err)
			continue
		}
		require.NoError(t, err, "%+v", c)
		if c.want == "" {
			require.Nil(t, b, "%+v", c)
			continue
		}
		require.True(t, strings.HasPrefix(filepath.Base(b.Path), c.want), "%s for %+v", b.Path, c)
		require.Equal(t, c.args, b.Args)
		require.Equal(t, c.mode == "exec", b.Exec)
	}
	t.Setenv(BootstrapEnv, "none")
	o, err := parseFlags([]string{"-runtime", "python"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "none", o.bootstrap, "$FAAS_BOOTSTRAP when the flag is absent")
}
