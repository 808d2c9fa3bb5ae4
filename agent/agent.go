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

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/lifecycle"
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("agent: closed")

// Agent is the runtime agent of one pod. It serves two listeners: the
// control protocol (POST /v1/load, POST /v1/initialize, GET /v1/ping, GET
// /v1/stats, GET /v1/watch, GET /v1/metrics) to callers that present the pod's control
// token, and invocations, which it proxies to the loaded function's process
// whatever their path. [Agent.ControlHandler] and [Agent.InvokeHandler] can
// be mounted in any server; [Agent.Serve] runs both.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	start  time.Time
	trees  *treeCache
	tokens wire.TokenMatcher

	// ctx is cancelled by Close, aborting loads in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below and load/unload
	loading bool
	closed  bool
	servers []*http.Server
	dirs    []string // work directories this agent created
	seq     int
	// changed is closed and replaced at every change of the agent's state
	// (loading, loaded, ready, generic again), waking the watches; a
	// process's exit wakes them through its done channel.
	changed chan struct{}

	fn atomic.Pointer[function] // the loaded function, or nil
	// boot is the bootstrap started with the agent, waiting for its hot
	// load (nil once it has one, and without a Bootstrap or with
	// Bootstrap.Exec). Guarded by mu.
	boot *bootstrapProc
	// broken says why a pod without a function is unusable ("": it is
	// not): a hot load failed. Guarded by mu.
	broken string

	limiter  *limiter
	out      *outputLog
	logs     logCounters
	memKills atomic.Int64

	// Counters of requests refused before reaching a function (also
	// counted while no function is loaded).
	rejected atomic.Int64
	// watching counts the watches waiting for a change.
	watching atomic.Int32

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
	a := &Agent{cfg: cfg, log: cfg.Logger, start: time.Now(), tokens: wire.NewTokenMatcher(cfg.ControlToken), changed: make(chan struct{})}
	if cfg.Instance != "" {
		a.log = a.log.With("instance", cfg.Instance)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if cfg.TreeDir != "" {
		a.trees = &treeCache{dir: cfg.TreeDir, max: cfg.TreeCacheSize, log: cfg.Logger, link: cfg.RunAs != nil}
	}
	a.limiter = newLimiter(cfg.MemoryEnforcement, cfg.CgroupParent)
	if a.limiter.cgErr != nil && cfg.MemoryEnforcement != MemoryNone {
		a.log.Debug("no cgroup for memory limits", "err", a.limiter.cgErr)
	}
	a.out = &outputLog{sink: cfg.LogSink, instance: cfg.Instance, maxLine: cfg.LogLineBytes,
		bucket: newTokenBucket(cfg.LogRate, cfg.LogBurst, time.Now()), counts: &a.logs, now: time.Now}
	if cfg.Bootstrap != nil && !cfg.Bootstrap.Exec {
		// The unified base image: the runtime starts with the pod, and a
		// cold start only tells it what to load.
		b, err := a.startBootstrap(a.limiter.reserve())
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.boot = b
	}
	return a, nil
}

// Addrs are the addresses the agent listens on (see [Run]).
type Addrs struct {
	// Invoke takes invocations; port 0 picks a free port.
	Invoke string
	// Control serves the control protocol; port 0 picks a free port.
	Control string
}

// Listeners are the agent's two listeners (see [Agent.Serve]).
type Listeners struct {
	// Invoke takes invocations: every request on it goes to the function.
	Invoke net.Listener
	// Control serves the control protocol to callers with the pod's
	// control token.
	Control net.Listener
}

// Listen opens the listeners for addrs.
func Listen(addrs Addrs) (Listeners, error) {
	inv, err := net.Listen("tcp", addrs.Invoke)
	if err != nil {
		return Listeners{}, fmt.Errorf("agent: invocation listener: %w", err)
	}
	ctl, err := net.Listen("tcp", addrs.Control)
	if err != nil {
		_ = inv.Close()
		return Listeners{}, fmt.Errorf("agent: control listener: %w", err)
	}
	return Listeners{Invoke: inv, Control: ctl}, nil
}

// Close closes both listeners.
func (l Listeners) Close() error {
	var errs []error
	for _, ln := range []net.Listener{l.Invoke, l.Control} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

// Run starts an agent for cfg, serves it on addrs until ctx is done, then
// closes it. It is the whole life of a pod's agent in one call.
func Run(ctx context.Context, cfg Config, addrs Addrs) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	lns, err := Listen(addrs)
	if err != nil {
		_ = a.Close()
		return err
	}
	return a.Serve(ctx, lns)
}

// Serve serves invocations on lns.Invoke and the control protocol on
// lns.Control until ctx is done or Close is called; when ctx is done it
// closes the agent, which stops the function process. The invocation
// listener accepts HTTP/1.1 and HTTP/2 without TLS (h2c, for gRPC callers).
// It returns nil after a shutdown, ErrClosed when the agent was already
// closed, or a listener's error.
func (a *Agent) Serve(ctx context.Context, lns Listeners) error {
	if lns.Invoke == nil || lns.Control == nil {
		_ = lns.Close()
		return errors.New("agent: Serve needs both listeners")
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	errorLog := slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)
	invoke := &http.Server{
		Handler:           a.InvokeHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         &protocols,
		ErrorLog:          errorLog,
	}
	control := &http.Server{
		Handler:           a.ControlHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog,
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		_ = lns.Close()
		return ErrClosed
	}
	a.servers = append(a.servers, invoke, control)
	a.serving.Add(1)
	a.mu.Unlock()
	defer a.serving.Done()

	a.log.Info("agent serving", "invoke", lns.Invoke.Addr().String(), "control", lns.Control.Addr().String(),
		"runtime", a.cfg.Runtime, "node", a.cfg.Node)
	errc := make(chan error, 2)
	go func() { errc <- invoke.Serve(lns.Invoke) }()
	go func() { errc <- control.Serve(lns.Control) }()
	var first error
	select {
	case first = <-errc:
		// One listener failed: the pod is of no use half-served.
		_ = invoke.Close()
		_ = control.Close()
		<-errc
	case <-ctx.Done():
		// Not Close: it would wait for this very Serve to return.
		a.closeOnce.Do(a.doClose)
		<-errc
		<-errc
		return nil
	}
	if errors.Is(first, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("agent: %w", first)
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
	a.cancel()     // aborts a load still running, ends watches
	a.loads.Wait() // a load that finishes now sees closed and undoes itself

	a.mu.Lock()
	f := a.fn.Swap(nil)
	dirs := a.dirs
	a.dirs = nil
	boot := a.boot
	a.boot = nil
	a.mu.Unlock()
	if f != nil {
		f.stop(a.cfg.StopGrace)
	}
	if boot != nil {
		boot.stop(a.cfg.StopGrace)
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, os.RemoveAll(d))
	}
	a.closeErr = errors.Join(errs...)
	a.log.Info("agent closed")
}

// ControlHandler returns the handler of the control protocol: the six
// endpoints (exact paths), each for callers that present the pod's control
// token (anyone else gets 401 unauthorized, before anything else is
// looked at).
func (a *Agent) ControlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.tokens.Match(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="faas-agent"`)
			wire.WriteError(w, requestID(r), 0, lifecycle.CodeUnauthorized, "this endpoint needs the pod's control token")
			return
		}
		switch r.URL.Path {
		case lifecycle.PathLoad:
			a.serveLoad(w, r)
		case lifecycle.PathInitialize:
			a.serveInitialize(w, r)
		case lifecycle.PathPing:
			a.servePing(w, r)
		case lifecycle.PathStats:
			a.serveStats(w, r)
		case lifecycle.PathWatch:
			a.serveWatch(w, r)
		case lifecycle.PathMetrics:
			a.serveMetrics(w, r)
		default:
			wire.WriteError(w, requestID(r), http.StatusNotFound, lifecycle.CodeBadRequest, "no control endpoint "+r.URL.Path)
		}
	})
}

// InvokeHandler returns the handler of invocations: every request, whatever
// its path, is proxied to the loaded function (see serveInvoke for the
// checks before).
func (a *Agent) InvokeHandler() http.Handler { return http.HandlerFunc(a.serveInvoke) }

// notify wakes the watches: the agent's state changed. Callers hold a.mu.
func (a *Agent) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
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
	// HotLoad is true when the function runs in the bootstrap started
	// with the agent.
	HotLoad bool
	// BootstrapPID is the runtime's bootstrap waiting for its hot load (0
	// when none waits).
	BootstrapPID int
	// Broken says why a pod without a function is unusable ("": it is
	// not).
	Broken string
}

// Status returns a snapshot of the agent's function.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Broken: a.broken}
	if a.boot != nil {
		st.BootstrapPID = a.boot.proc.pid
	}
	a.mu.Unlock()
	f := a.fn.Load()
	if f == nil {
		return st
	}
	st.FunctionID, st.PID, st.Addr, st.Ready, st.Exited, st.Dir, st.HotLoad =
		f.id, f.proc.pid, f.proc.addr, f.ready.Load(), f.proc.exited.Load(), f.dir, f.hot
	return st
}

func requestID(r *http.Request) string { return r.Header.Get(lifecycle.HeaderRequestID) }

// onlyMethod answers 405 unless r has method m.
func onlyMethod(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m {
		return true
	}
	w.Header().Set("Allow", m)
	wire.WriteError(w, requestID(r), 0, lifecycle.CodeMethodNotAllowed, r.URL.Path+" takes "+m)
	return false
}

// Unload stops the loaded function (its whole process group), removes its
// code from the work directory, and makes the agent a generic pod again,
// ready for another load; with a hot-load Bootstrap it starts a new one
// (the pod is broken when that fails), which also repairs a pod that a
// failed hot load left unusable. The dataplane normally deletes a
// specialized pod instead of reusing it, since a function may leave traces
// outside its process group; Unload is for embedders that know better
// (tests, benchmarks, trusted single-tenant pools). It does nothing on a
// usable generic pod and waits for the process to be gone.
func (a *Agent) Unload() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	f := a.fn.Swap(nil)
	old := a.boot
	broken := a.brokenLocked() != ""
	if f != nil {
		a.dirs = slices.DeleteFunc(a.dirs, func(d string) bool { return d == f.dir })
		a.notifyLocked()
	}
	if broken {
		a.boot = nil
	}
	a.mu.Unlock()
	if f == nil && !broken {
		return
	}
	if f != nil {
		f.stop(a.cfg.StopGrace)
		_ = os.RemoveAll(f.dir)
		a.log.Info("function unloaded", "function_id", f.id)
	}
	if old != nil && broken {
		old.stop(a.cfg.StopGrace)
	}
	var b *bootstrapProc
	var err error
	if a.cfg.Bootstrap != nil && !a.cfg.Bootstrap.Exec {
		b, err = a.startBootstrap(a.limiter.reserve())
	}
	a.mu.Lock()
	closed := a.closed
	switch {
	case err != nil:
		a.broken = err.Error()
	case closed:
	default:
		a.broken = ""
		if b != nil {
			a.boot = b
		}
	}
	a.notifyLocked()
	a.mu.Unlock()
	if b != nil && closed {
		b.stop(a.cfg.StopGrace)
	}
}

// brokenLocked returns why the pod is unusable without a function: a hot
// load failed, or the bootstrap waiting for its load exited. Callers hold
// a.mu.
func (a *Agent) brokenLocked() string {
	if a.broken != "" {
		return a.broken
	}
	if a.boot != nil && a.boot.proc.exited.Load() {
		return "the " + a.cfg.Runtime + " bootstrap exited before any load (" + a.boot.proc.exitText + ")"
	}
	return ""
}
