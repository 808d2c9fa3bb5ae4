package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("agent: closed")

// Agent is the runtime agent of one pod. It serves the agent protocol
// (POST /v1/load, POST /v1/initialize, GET /v1/ping, GET /v1/stats) and
// proxies invocations to the loaded function's process. It is an
// http.Handler, so it can be mounted in any server; [Agent.Serve] runs its
// own.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	trees *treeCache

	// ctx is cancelled by Close, aborting loads in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below and load/unload
	loading bool
	closed  bool
	servers []*http.Server
	dirs    []string // work directories this agent created
	seq     int

	fn atomic.Pointer[function] // the loaded function, or nil

	// Counters of requests refused before reaching a function (also
	// counted while no function is loaded).
	rejected atomic.Int64

	closeOnce sync.Once
	closeErr  error
	serving   sync.WaitGroup // Serve calls
	loads     sync.WaitGroup // load handlers past admission
}

// New returns an agent for cfg, with no function loaded: a generic warm pod.
// It creates cfg.WorkDir (and cfg.TreeDir) if missing.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, start: time.Now()}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if cfg.TreeDir != "" {
		a.trees = &treeCache{dir: cfg.TreeDir, max: cfg.TreeCacheSize, log: cfg.Logger}
	}
	return a, nil
}

// Run starts an agent for cfg, serves it on listenAddr until ctx is done,
// then closes it. It is the whole life of a pod's agent in one call.
func Run(ctx context.Context, cfg Config, listenAddr string) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		_ = a.Close()
		return fmt.Errorf("agent: %w", err)
	}
	return a.Serve(ctx, ln)
}

// Serve serves the agent on ln until ctx is done or Close is called; when
// ctx is done it closes the agent, which stops the function process. It
// accepts HTTP/1.1 and HTTP/2 without TLS (h2c, for gRPC callers). It
// returns nil after a shutdown, ErrClosed when the agent was already closed,
// or the listener's error.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	a.servers = append(a.servers, srv)
	a.serving.Add(1)
	a.mu.Unlock()
	defer a.serving.Done()

	a.log.Info("agent serving", "addr", ln.Addr().String(), "runtime", a.cfg.Runtime, "node", a.cfg.Node)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("agent: %w", err)
	case <-ctx.Done():
		// Not Close: it would wait for this very Serve to return.
		a.closeOnce.Do(a.doClose)
		<-errc
		return nil
	}
}

// Close stops serving (in-flight requests get up to StopGrace), aborts a
// load in progress, stops the function process and its process group, and
// removes the work directories the agent created. It is idempotent and
// waits for all of it, including the Serve calls to return.
func (a *Agent) Close() error {
	a.closeOnce.Do(a.doClose)
	a.serving.Wait()
	return a.closeErr
}

func (a *Agent) doClose() {
	a.mu.Lock()
	a.closed = true
	servers := a.servers
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StopGrace)
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
	cancel()
	a.cancel()     // aborts a load still running
	a.loads.Wait() // a load that finishes now sees closed and undoes itself

	a.mu.Lock()
	f := a.fn.Swap(nil)
	dirs := a.dirs
	a.dirs = nil
	a.mu.Unlock()
	if f != nil {
		f.stop(a.cfg.StopGrace)
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, os.RemoveAll(d))
	}
	a.closeErr = errors.Join(errs...)
	a.log.Info("agent closed")
}

// ServeHTTP routes the protocol's four endpoints (exact paths) and proxies
// every other request to the loaded function.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case lifecycle.PathLoad:
		a.serveLoad(w, r)
	case lifecycle.PathInitialize:
		a.serveInitialize(w, r)
	case lifecycle.PathPing:
		a.servePing(w, r)
	case lifecycle.PathStats:
		a.serveStats(w, r)
	default:
		a.serveInvoke(w, r)
	}
}

// Status is a snapshot of the agent for embedding programs and tests.
type Status struct {
	// FunctionID is the loaded function, or "" for a generic pod.
	FunctionID string
	// PID is the function process's ID (0 when none).
	PID int
	// Addr is the function process's host:port.
	Addr string
	// Ready is true once initialize has succeeded.
	Ready bool
	// Exited is true when the function process has exited.
	Exited bool
	// Dir is the function's unpacked code.
	Dir string
}

// Status returns a snapshot of the agent's function.
func (a *Agent) Status() Status {
	f := a.fn.Load()
	if f == nil {
		return Status{}
	}
	return Status{FunctionID: f.id, PID: f.proc.pid, Addr: f.proc.addr, Ready: f.ready.Load(), Exited: f.proc.exited.Load(), Dir: f.dir}
}

func requestID(r *http.Request) string { return r.Header.Get(lifecycle.HeaderRequestID) }

// onlyMethod answers 405 unless r has method m.
func onlyMethod(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m {
		return true
	}
	w.Header().Set("Allow", m)
	lifecycle.WriteError(w, requestID(r), 0, lifecycle.CodeMethodNotAllowed, r.URL.Path+" takes "+m)
	return false
}

// Unload stops the loaded function (its whole process group), removes its
// code from the work directory, and makes the agent a generic pod again,
// ready for another load. The dataplane normally deletes a specialized pod
// instead of reusing it, since a function may leave traces outside its
// process group; Unload is for embedders that know better (tests,
// benchmarks, trusted single-tenant pools). It does nothing on a generic
// pod and waits for the process to be gone.
func (a *Agent) Unload() {
	a.mu.Lock()
	f := a.fn.Swap(nil)
	if f != nil {
		a.dirs = slices.DeleteFunc(a.dirs, func(d string) bool { return d == f.dir })
	}
	a.mu.Unlock()
	if f == nil {
		return
	}
	f.stop(a.cfg.StopGrace)
	_ = os.RemoveAll(f.dir)
	a.log.Info("function unloaded", "function_id", f.id)
}
