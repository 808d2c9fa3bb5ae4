// Package conformance checks a language runtime against faasplane's runtime
// protocol (RUNTIMES.md) without an agent: it starts the runtime's
// bootstrap the way an agent does (PORT, the control pipe on descriptor 3,
// the event pipe on 4), sends it load messages, calls the init hook and
// invocations over HTTP, and stops it with SIGTERM or by closing the
// control pipe, checking every answer against the protocol. A platform
// team that adds a runtime (Java, Rust, Ruby...) calls [Run] from an
// ordinary Go test with the bootstrap's command and the runtime's
// conformance fixture: a function written for that runtime that serves the
// routes RUNTIMES.md lists (/hello, /echo, /stream, /barrier, /error, ...).
//
// The suite is the protocol's executable half: each subtest names the
// clause it checks (ready before load, one load per bootstrap, init hook
// retried in the same process, errors on the X-Faas-Error-* headers,
// streaming, concurrency, structured logs with the request ID, graceful
// stop). Both shipped runtimes, Python and Node.js, pass it. [Start] and
// [Bootstrap] are the driver, usable by a runtime author's own tests.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Runtime is a runtime under test.
type Runtime struct {
	// Name is the runtime's name (FAAS_RUNTIME).
	Name string
	// Path, Args and Env start its bootstrap.
	Path string
	Args []string
	Env  []string
	// Fixture is the directory of the runtime's conformance fixture, with
	// its faas.json (whose command is the entry).
	Fixture string
	// Timeout bounds each step (default 30 s).
	Timeout time.Duration
}

// Run runs the conformance suite against rt as subtests of t.
func Run(t *testing.T, rt Runtime) {
	if rt.Timeout <= 0 {
		rt.Timeout = 30 * time.Second
	}
	entry, err := fixtureEntry(rt.Fixture)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	s := &suite{rt: rt, entry: entry}
	t.Run("ReadyBeforeLoad", s.readyBeforeLoad)
	t.Run("LoadInitServe", s.loadInitServe)
	t.Run("FailedLoad", s.failedLoad)
	t.Run("GracefulStop", s.gracefulStop)
	t.Run("ControlEOFStops", s.controlEOF)
	t.Run("StopBeforeLoad", s.stopBeforeLoad)
	t.Run("Crash", s.crash)
}

type suite struct {
	rt    Runtime
	entry string
}

func fixtureEntry(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "faas.json"))
	if err != nil {
		return "", err
	}
	var m struct {
		Command string `json:"command"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Command == "" {
		return "", fmt.Errorf("faas.json needs a command (the entry): %v", err)
	}
	return m.Command, nil
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.rt.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// start starts the bootstrap in a fresh directory; it is killed at the
// end of the test.
func (s *suite) start(t *testing.T) *Bootstrap {
	t.Helper()
	b, err := Start(s.ctx(t), s.rt, t.TempDir())
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(b.Kill)
	return b
}

// codeDir copies the fixture into a new directory: the code directory of
// a load.
func (s *suite) codeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "code")
	if err := os.CopyFS(dir, os.DirFS(s.rt.Fixture)); err != nil {
		t.Fatalf("copying the fixture: %v", err)
	}
	return dir
}

// load starts a bootstrap and loads the fixture with env.
func (s *suite) load(t *testing.T, env map[string]string) (*Bootstrap, string) {
	t.Helper()
	b := s.start(t)
	dir := s.codeDir(t)
	all := map[string]string{"FAAS_FUNCTION_ID": "conformance"}
	for k, v := range env {
		all[k] = v
	}
	// A message of a newer protocol first: a bootstrap ignores it.
	if err := b.Send(map[string]string{"type": "from-the-future"}); err != nil {
		t.Fatal(err)
	}
	ev, err := b.Load(s.ctx(t), Load{FunctionID: "conformance", CodeDir: dir, Entry: s.entry, Env: all, InitPath: "/_faas/init", Concurrency: 8})
	if err != nil {
		t.Fatalf("load: %v (stderr: %s)", err, b.Stderr())
	}
	if ev.Type != "loaded" {
		t.Fatalf("load answered %+v, want loaded (stderr: %s)", ev, b.Stderr())
	}
	return b, dir
}

// The ready event comes once the port listens, before any load; the
// bootstrap runs no function code before it is told what to load.
func (s *suite) readyBeforeLoad(t *testing.T) {
	b := s.start(t)
	if b.Ready.Runtime == "" {
		t.Errorf("ready event %+v names no runtime", b.Ready)
	}
	if b.Ready.PID != 0 && b.Ready.PID != b.PID() {
		t.Errorf("ready event says pid %d, the bootstrap is %d", b.Ready.PID, b.PID())
	}
	switch b.Ready.Protocol {
	case "", "http1", "h2c":
	default:
		t.Errorf("ready event declares protocol %q, want http1 or h2c", b.Ready.Protocol)
	}
	c, err := dial(b.Addr)
	if err != nil {
		t.Fatalf("the port does not listen after ready: %v", err)
	}
	_ = c.Close()
}

// The main clauses: a load, the init hook, invocations.
func (s *suite) loadInitServe(t *testing.T) {
	b, dir := s.load(t, map[string]string{"FIXTURE_VAR": "from the load", "FAIL_INIT_TIMES": "1"})
	c := newClient(b.Addr)
	defer c.close()
	ctx := s.ctx(t)

	// Before init, invocations get 503.
	if r := c.do(t, ctx, "GET", "/hello", "", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("before init: status %d, want 503", r.status)
	}
	// The init hook: a failure keeps the process, a retry succeeds, and
	// a call after success does not run init again.
	r := c.do(t, ctx, "POST", "/_faas/init", "", nil)
	if r.status/100 == 2 || !strings.Contains(r.body, "init attempt 1 fails on purpose") {
		t.Errorf("first init: %d %q, want a failure carrying the init's message", r.status, r.body)
	}
	for i := 0; i < 2; i++ {
		if r := c.do(t, ctx, "POST", "/_faas/init", "", nil); r.status/100 != 2 {
			t.Fatalf("init call %d: %d %q, want 2xx", i+2, r.status, r.body)
		}
	}
	if r := c.do(t, ctx, "GET", "/init-count", "", nil); strings.TrimSpace(r.body) != "2" {
		t.Errorf("init ran %q times, want 2 (once failing, once succeeding)", r.body)
	}

	t.Run("Handler", func(t *testing.T) {
		expect(t, c.do(t, ctx, "GET", "/hello?name=conformance", "", nil), 200, "hello, conformance\n")
		r := c.do(t, ctx, "GET", "/status?code=201", "", nil)
		if r.status != 201 || r.header.Get("X-Fixture") != "yes" {
			t.Errorf("status route: %d %v", r.status, r.header)
		}
		r = c.do(t, ctx, "GET", "/json?a=1", "", nil)
		var v map[string]any
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(r.body), &v) != nil || v["path"] != "/json" {
			t.Errorf("json route: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}
		if r := c.do(t, ctx, "GET", "/empty", "", nil); r.status != http.StatusNoContent {
			t.Errorf("empty route: status %d, want 204", r.status)
		}
		expect(t, c.do(t, ctx, "GET", "/header?name=X-Conformance", "", map[string]string{"X-Conformance": "passed on"}), 200, "passed on")
	})
	t.Run("Body", func(t *testing.T) {
		big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
		r := c.do(t, ctx, "POST", "/echo", big, nil)
		if r.status != 200 || r.body != big || r.header.Get("X-Echo-Length") != "1048576" {
			t.Errorf("echo: status %d, %d bytes back, X-Echo-Length %q", r.status, len(r.body), r.header.Get("X-Echo-Length"))
		}
	})
	t.Run("Environment", func(t *testing.T) {
		expect(t, c.do(t, ctx, "GET", "/env?name=FIXTURE_VAR", "", nil), 200, "from the load")
		expect(t, c.do(t, ctx, "GET", "/env?name=FAAS_FUNCTION_ID", "", nil), 200, "conformance")
		r := c.do(t, ctx, "GET", "/cwd", "", nil)
		want, _ := filepath.EvalSymlinks(dir)
		got, _ := filepath.EvalSymlinks(strings.TrimSpace(r.body))
		if got != want {
			t.Errorf("working directory %q, want the code directory %q", r.body, dir)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		r := c.do(t, ctx, "GET", "/error", "", map[string]string{"X-Faas-Request-Id": "req-err"})
		checkError(t, r, 500, "internal", "boom from fixture", "req-err")
		r = c.do(t, ctx, "GET", "/httperror", "", map[string]string{"X-Faas-Request-Id": "req-418"})
		checkError(t, r, 418, "bad_request", "teapot", "req-418")
	})
	t.Run("Streaming", func(t *testing.T) {
		key := filepath.Join(dir, "release-stream")
		resp, br := c.open(t, ctx, "/stream?key="+key)
		defer resp.Body.Close()
		// The first chunk arrives while the handler still waits: the
		// answer streams.
		if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
			t.Fatalf("first chunk %q: %v", line, err)
		}
		release(t, key)
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "second\n" {
			t.Errorf("rest %q: %v", rest, err)
		}
		// A handler that fails mid-stream breaks the body off: the
		// caller must not take a partial answer for a whole one.
		resp2, br2 := c.open(t, ctx, "/stream-error")
		defer resp2.Body.Close()
		if _, err := io.ReadAll(br2); err == nil {
			t.Errorf("a stream that failed ended cleanly")
		}
	})
	t.Run("Concurrency", func(t *testing.T) {
		// Two requests that wait for each other: served concurrently, or
		// never.
		var wg sync.WaitGroup
		results := make([]result, 2)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.do(t, ctx, "GET", "/barrier?key=conc&n=2", "", nil)
			}()
		}
		wg.Wait()
		for _, r := range results {
			expect(t, r, 200, "met\n")
		}
	})
	t.Run("KeepAlive", func(t *testing.T) {
		var reused bool
		tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = reused || i.Reused }})
		for i := 0; i < 3; i++ {
			expect(t, c.do(t, tctx, "GET", "/hello", "", nil), 200, "hello, world\n")
		}
		if !reused {
			t.Errorf("no connection was reused: the runtime must keep HTTP/1.1 connections alive")
		}
	})
	t.Run("Logs", func(t *testing.T) {
		expect(t, c.do(t, ctx, "GET", "/print?n=3", "", nil), 200, "printed\n")
		for i := 0; i < 3; i++ {
			if _, err := b.WaitOutput(ctx, false, fmt.Sprintf("line %d", i)); err != nil {
				t.Errorf("stdout: %v", err)
			}
		}
		expect(t, c.do(t, ctx, "GET", "/log", "", map[string]string{"X-Faas-Request-Id": "req-log"}), 200, "logged\n")
		line, err := b.WaitOutput(ctx, true, "fixture log")
		if err != nil {
			t.Fatalf("stderr: %v", err)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a structured log line is a JSON object: %q: %v", line, err)
		}
		if rec["msg"] != "fixture log" || rec["request_id"] != "req-log" || rec["k"] != "v" {
			t.Errorf("log record %v: want msg, request_id and the attribute k", rec)
		}
	})
	t.Run("OneLoad", func(t *testing.T) {
		// An unknown message is ignored (it is for newer runtimes); a
		// second load is refused and changes nothing.
		if err := b.Send(map[string]string{"type": "from-the-future"}); err != nil {
			t.Fatal(err)
		}
		ev, err := b.Load(ctx, Load{FunctionID: "other", CodeDir: dir, Entry: s.entry})
		if err != nil || ev.Type != "load_failed" || ev.Error == "" {
			t.Errorf("a second load answered %+v, %v; want load_failed with an error", ev, err)
		}
		expect(t, c.do(t, ctx, "GET", "/hello", "", nil), 200, "hello, world\n")
	})
}

// A load that cannot succeed is answered load_failed, with the error.
func (s *suite) failedLoad(t *testing.T) {
	file, _, _ := strings.Cut(s.entry, ":")
	for _, entry := range []string{"does-not-exist" + filepath.Ext(file), file + ":noSuchHandler"} {
		b := s.start(t)
		ev, err := b.Load(s.ctx(t), Load{FunctionID: "broken", CodeDir: s.codeDir(t), Entry: entry, Env: map[string]string{}})
		if err != nil || ev.Type != "load_failed" || ev.Error == "" {
			t.Errorf("entry %q: %+v, %v; want load_failed with an error", entry, ev, err)
		}
	}
}

// SIGTERM: no new connections, the requests in flight finish, exit 0.
func (s *suite) gracefulStop(t *testing.T) {
	b, dir := s.load(t, nil)
	c := newClient(b.Addr)
	defer c.close()
	ctx := s.ctx(t)
	expect(t, c.do(t, ctx, "POST", "/_faas/init", "", nil), 200, "")
	key := filepath.Join(dir, "release-stop")
	held := make(chan result, 1)
	go func() { held <- c.do(t, ctx, "GET", "/wait?key="+key, "", nil) }()
	// The fixture says on stdout when its handler runs.
	if _, err := b.WaitOutput(ctx, false, "waiting for "+key); err != nil {
		t.Fatal(err)
	}
	if err := b.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitClosed(ctx, b.Addr); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	release(t, key)
	expect(t, <-held, 200, "released\n")
	st, err := b.Wait(ctx)
	if err != nil || !st.Success() {
		t.Errorf("after SIGTERM the bootstrap ended %v, %v; want exit 0 (stderr: %s)", st, err, b.Stderr())
	}
}

// The end of the control pipe (the agent died) stops the bootstrap.
func (s *suite) controlEOF(t *testing.T) {
	b, _ := s.load(t, nil)
	b.CloseControl()
	if _, err := b.Wait(s.ctx(t)); err != nil {
		t.Errorf("the bootstrap outlived its control pipe: %v", err)
	}
}

// SIGTERM before any load ends the bootstrap at once.
func (s *suite) stopBeforeLoad(t *testing.T) {
	b := s.start(t)
	if err := b.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wait(s.ctx(t)); err != nil {
		t.Errorf("SIGTERM before a load: %v", err)
	}
}

// A function that exits ends the bootstrap with its status: the agent
// sees the process die.
func (s *suite) crash(t *testing.T) {
	b, _ := s.load(t, nil)
	c := newClient(b.Addr)
	defer c.close()
	ctx := s.ctx(t)
	expect(t, c.do(t, ctx, "POST", "/_faas/init", "", nil), 200, "")
	_, _ = c.send(ctx, "GET", "/crash", "", nil)
	st, err := b.Wait(ctx)
	if err != nil || st.Success() {
		t.Errorf("after /crash the bootstrap ended %v, %v; want a failure status", st, err)
	}
}

func release(t *testing.T, key string) {
	t.Helper()
	if err := os.WriteFile(key, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkError(t *testing.T, r result, status int, code, msg, rid string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %q)", r.status, status, r.body)
	}
	if got := r.header.Get("X-Faas-Error-Code"); got != code {
		t.Errorf("X-Faas-Error-Code %q, want %q", got, code)
	}
	if got := r.header.Get("X-Faas-Error-Message"); !strings.Contains(got, msg) {
		t.Errorf("X-Faas-Error-Message %q, want it to contain %q", got, msg)
	}
	if got := r.header.Get("X-Faas-Request-Id"); got != rid {
		t.Errorf("X-Faas-Request-Id %q, want %q", got, rid)
	}
	if got := r.header.Get("X-Faas-Error-Source"); got != "" {
		t.Errorf("a runtime must not claim to be faasplane: X-Faas-Error-Source %q", got)
	}
}

func expect(t *testing.T, r result, status int, body string) {
	t.Helper()
	if r.status != status || (body != "" && r.body != body) {
		t.Errorf("got %d %q, want %d %q", r.status, r.body, status, body)
	}
}
