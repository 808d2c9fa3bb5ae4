package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/internal/wire"
	"github.com/faasplane/faas/lifecycle"
)

// serveLoad handles POST /v1/load: fetch, verify and unpack the code, then
// start the function process and answer once it listens, or, with a
// hot-load bootstrap, tell the running bootstrap to load the function and
// answer once it has. One load at a time; a pod that holds a function
// refuses further loads (409 already_loaded). A failed load leaves the
// agent generic again, with nothing left behind, except a failed hot load:
// the bootstrap may be half-loaded, so it is stopped and the pod refuses
// any further use (503 function_exited on ping, 502 load_failed on load)
// until it is deleted.
func (a *Agent) serveLoad(w http.ResponseWriter, r *http.Request) {
	rid := requestID(r)
	if !onlyMethod(w, r, http.MethodPost) {
		return
	}
	req, err := wire.DecodeLoadRequest(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	if err != nil {
		wire.WriteErr(w, rid, err)
		return
	}
	if req.Runtime != a.cfg.Runtime {
		wire.WriteError(w, rid, 0, lifecycle.CodeBadRequest,
			fmt.Sprintf("function needs runtime %q, this agent provides %q", req.Runtime, a.cfg.Runtime))
		return
	}
	if _, ok := req.Env["PORT"]; ok {
		wire.WriteError(w, rid, 0, lifecycle.CodeBadRequest, "env: PORT is set by the agent")
		return
	}
	if req.Limits.Concurrency > a.cfg.MaxConcurrency {
		wire.WriteError(w, rid, 0, lifecycle.CodeBadRequest,
			fmt.Sprintf("limits.concurrency %d is above this agent's maximum %d", req.Limits.Concurrency, a.cfg.MaxConcurrency))
		return
	}

	a.mu.Lock()
	switch broken := a.brokenLocked(); {
	case a.closed:
		a.mu.Unlock()
		wire.WriteError(w, rid, 0, lifecycle.CodeNotReady, "agent is shutting down")
		return
	case a.loading || a.fn.Load() != nil:
		current := "a load in progress"
		if f := a.fn.Load(); f != nil {
			current = "function " + f.id
		}
		a.mu.Unlock()
		wire.WriteError(w, rid, 0, lifecycle.CodeAlreadyLoaded, "this pod already has "+current)
		return
	case broken != "":
		a.mu.Unlock()
		wire.WriteError(w, rid, 0, lifecycle.CodeLoadFailed, "this pod is unusable and must be deleted: "+broken)
		return
	}
	a.loading = true
	a.notifyLocked()
	a.loads.Add(1)
	a.seq++
	dir := filepath.Join(a.cfg.WorkDir, "fn-"+strconv.Itoa(a.seq))
	a.mu.Unlock()
	defer a.loads.Done()

	// The load stops when the caller gives up or the agent closes.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(a.ctx, cancel)
	defer stopOnClose()

	log := a.log.With("function_id", req.FunctionID)
	f, resp, err := a.load(ctx, &req, dir)
	a.mu.Lock()
	a.loading = false
	a.notifyLocked()
	if err == nil && a.closed {
		err = lifecycle.Errorf(lifecycle.CodeNotReady, "agent closed during the load")
	}
	if err != nil {
		if resp.HotLoad && a.broken == "" {
			a.broken = "the hot load of " + req.FunctionID + " failed: " + err.Error()
		}
		a.mu.Unlock()
		if f != nil {
			f.stop(a.cfg.StopGrace)
		}
		_ = os.RemoveAll(dir)
		log.Warn("load failed", "err", err, "hot_load", resp.HotLoad)
		wire.WriteErr(w, rid, err)
		return
	}
	a.dirs = append(a.dirs, dir)
	a.fn.Store(f)
	a.mu.Unlock()
	log.Info("function loaded", "pid", resp.PID, "addr", f.proc.addr, "protocol", resp.Protocol, "protocol_source", resp.ProtocolSource,
		"hot_load", resp.HotLoad, "cache_hit", resp.CacheHit, "memory_limit", resp.MemoryLimit,
		"fetch_ms", resp.Timings.FetchMillis, "unpack_ms", resp.Timings.UnpackMillis, "start_ms", resp.Timings.StartMillis)
	writeJSON(w, resp)
}

// load does the work of a load into dir. On error it returns the function
// when its process was started, for the caller to stop; resp.HotLoad is
// set once the bootstrap started with the agent was handed the load (a
// failure from then on breaks the pod).
func (a *Agent) load(ctx context.Context, req *lifecycle.LoadRequest, dir string) (*function, lifecycle.LoadResponse, error) {
	resp := lifecycle.LoadResponse{FunctionID: req.FunctionID}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, resp, lifecycle.Errorf(lifecycle.CodeInternal, "creating work directory: %v", err)
	}
	ref := code.Ref{URI: req.Code.URI, Digest: req.Code.Digest, Size: req.Code.Size}

	var stats code.UnpackStats
	unpack := func(ctx context.Context, into string) error {
		var err error
		stats, err = code.Unpack(ctx, a.cfg.Store, ref, into, code.UnpackOptions{Limits: a.cfg.Limits, SpoolDir: a.cfg.WorkDir})
		return err
	}
	t0 := time.Now()
	var err error
	if a.trees != nil {
		resp.CacheHit, err = a.trees.materialize(ctx, ref.Digest, dir, unpack)
	} else {
		err = unpack(ctx, dir)
	}
	if err != nil {
		return nil, resp, codeError(ctx, err)
	}
	if resp.CacheHit {
		resp.Timings.UnpackMillis = millis(time.Since(t0))
	} else {
		resp.Timings.FetchMillis = millis(stats.Fetch)
		resp.Timings.UnpackMillis = millis(time.Since(t0) - stats.Fetch)
	}

	m, source, err := a.manifest(req, dir)
	if err != nil {
		return nil, resp, err
	}
	a.out.setFunction(req.FunctionID)

	env := make(map[string]string, len(m.Env)+4)
	for k, v := range m.Env {
		env[k] = v
	}
	env["FAAS_FUNCTION_ID"], env["FAAS_RUNTIME"] = req.FunctionID, a.cfg.Runtime
	if req.Limits.MemoryBytes > 0 {
		env["FAAS_MEMORY_BYTES"] = strconv.FormatInt(req.Limits.MemoryBytes, 10)
	}
	if req.Limits.MilliCPU > 0 {
		env["FAAS_MILLI_CPU"] = strconv.FormatInt(req.Limits.MilliCPU, 10)
	}
	if a.cfg.Instance != "" {
		env["FAAS_INSTANCE"] = a.cfg.Instance
	}
	startTimeout := a.cfg.StartTimeout
	if req.StartTimeoutMillis > 0 {
		startTimeout = time.Duration(req.StartTimeoutMillis) * time.Millisecond
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	t1 := time.Now()
	var ls loadedSpec
	if a.cfg.Bootstrap != nil {
		ls, err = a.loadIntoBootstrap(sctx, req, m, dir, env, &resp)
	} else {
		ls, err = a.exec(sctx, req, m, dir, env)
	}
	if ls.proc != nil {
		resp.PID = ls.proc.pid
	}
	lim := ls.lim
	if lim != nil {
		resp.MemoryLimit, resp.CPULimit = lim.mem, lim.cpu
	}
	if err != nil {
		return a.stopLoaded(ls), resp, err
	}
	switch {
	case source != "":
		ls.protocol = m.Protocol
	case ls.protocol != "":
		source = lifecycle.ProtocolFromRuntime
	default:
		t2 := time.Now()
		ls.protocol, err = detectProtocol(sctx, ls.proc.addr, a.cfg.ProbeTimeout)
		resp.Timings.ProbeMillis = millis(time.Since(t2))
		if err != nil {
			return a.stopLoaded(ls), resp, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
		}
		source = lifecycle.ProtocolDetected
	}
	if err := lim.serving(ls.proc.pid); err != nil {
		return a.stopLoaded(ls), resp, lifecycle.Errorf(lifecycle.CodeLoadFailed, "memory limit: %v", err)
	}
	resp.Timings.StartMillis = millis(time.Since(t1))
	resp.Protocol, resp.ProtocolSource = ls.protocol, source
	ls.protocolSource, ls.initPath, ls.dir = source, m.InitHookPath(), dir
	return newFunction(req, ls, a.log), resp, nil
}

// stopLoaded stops what a failed load started (which releases its limits)
// and returns nil.
func (a *Agent) stopLoaded(ls loadedSpec) *function {
	switch {
	case ls.boot != nil:
		ls.boot.stop(a.cfg.StopGrace)
	case ls.proc != nil:
		ls.proc.stop(a.cfg.StopGrace)
	default:
		ls.lim.release() // no process took them
	}
	return nil
}

func limitError(err error) error {
	return lifecycle.Errorf(lifecycle.CodeLoadFailed, "memory limit: %v", err)
}

// exec starts the manifest's command and waits until it listens.
func (a *Agent) exec(ctx context.Context, req *lifecycle.LoadRequest, m code.Manifest, dir string, env map[string]string) (loadedSpec, error) {
	path, err := m.Resolve(dir, exec.LookPath)
	if err != nil {
		return loadedSpec{}, lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	lim, err := a.limiter.prepare(req.Limits.MemoryBytes, req.Limits.MilliCPU)
	if err != nil {
		return loadedSpec{lim: lim}, limitError(err)
	}
	penv := append([]string(nil), a.cfg.BaseEnv...)
	for k, v := range env {
		penv = append(penv, k+"="+v)
	}
	proc, err := startProcess(processSpec{
		path: path, args: m.Args, dir: dir, env: penv, runAs: a.cfg.RunAs, limits: lim, out: a.out,
		logger: a.log, memKills: &a.memKills,
	})
	if err != nil {
		return loadedSpec{lim: lim}, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	ls := loadedSpec{proc: proc, lim: lim}
	if err := proc.waitReady(ctx); err != nil {
		return ls, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	return ls, nil
}

// loadIntoBootstrap loads the function into a bootstrap: the one waiting
// since the agent started (a hot load), or, with Bootstrap.Exec, a new one.
func (a *Agent) loadIntoBootstrap(ctx context.Context, req *lifecycle.LoadRequest, m code.Manifest, dir string,
	env map[string]string, resp *lifecycle.LoadResponse) (loadedSpec, error) {
	if m.Command == "" {
		return loadedSpec{}, lifecycle.Errorf(lifecycle.CodeBadPackage,
			"no entry: for runtime %s the manifest's command names the function's entry (e.g. \"app.py:handler\")", a.cfg.Runtime)
	}
	var b *bootstrapProc
	var lim *limits
	if a.cfg.Bootstrap.Exec {
		var err error
		if lim, err = a.limiter.prepare(req.Limits.MemoryBytes, req.Limits.MilliCPU); err != nil {
			return loadedSpec{lim: lim}, limitError(err)
		}
		if b, err = a.startBootstrap(lim); err != nil {
			return loadedSpec{lim: lim}, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
		}
	} else {
		a.mu.Lock()
		b, a.boot = a.boot, nil
		a.mu.Unlock()
		if b == nil {
			return loadedSpec{}, lifecycle.Errorf(lifecycle.CodeLoadFailed, "no bootstrap waits for a load")
		}
		// From here on a failure breaks the pod: the bootstrap has been
		// handed to this function.
		resp.HotLoad = true
		ls := loadedSpec{proc: b.proc, boot: b, hot: true}
		// The bootstrap already runs in the cgroup reserved for it: the
		// limits are only written there.
		reserved := b.proc.limits.Load()
		var err error
		lim, err = a.limiter.limit(reserved, req.Limits.MemoryBytes, req.Limits.MilliCPU)
		ls.lim = lim
		if err != nil {
			return ls, limitError(err)
		}
		b.proc.limits.Store(lim)
		if lim.cg != nil && (reserved == nil || reserved.cg == nil) {
			if err := lim.enter(b.proc.pid); err != nil {
				return ls, limitError(err)
			}
		}
	}
	ls := loadedSpec{proc: b.proc, boot: b, hot: resp.HotLoad, lim: lim}
	if err := b.waitReady(ctx); err != nil {
		return ls, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	ev, err := b.load(ctx, loadMessage{
		Type: "load", FunctionID: req.FunctionID, CodeDir: dir, Entry: m.Command, Args: m.Args, Env: env,
		InitPath: m.InitHookPath(), Concurrency: max(req.Limits.Concurrency, 1), TimeoutMs: req.Limits.TimeoutMillis,
		MemoryBytes: req.Limits.MemoryBytes,
	})
	if err != nil {
		var refused *errLoadRefused
		if errors.As(err, &refused) {
			a.log.Warn("the function did not load", "function_id", req.FunctionID, "error", refused.ev.Error, "detail", refused.ev.Detail)
		}
		return ls, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	a.log.Debug("hot load", "function_id", req.FunctionID, "runtime_ms", ev.Millis, "hot", resp.HotLoad)
	ls.protocol = b.info.protocolOf()
	return ls, nil
}

// manifest reads the package's manifest and applies the request's
// overrides: Command (with Args) replaces the manifest's command and
// arguments, Args alone its arguments, Protocol its protocol, and Env is
// added over its environment. source says who named the protocol ("" for
// nobody: the agent asks the runtime, or detects it).
func (a *Agent) manifest(req *lifecycle.LoadRequest, dir string) (m code.Manifest, source string, err error) {
	m, err = code.ReadManifest(dir)
	if errors.Is(err, code.ErrNoManifest) && req.Command != "" {
		m, err = code.Manifest{}, nil
	}
	if err != nil {
		return m, "", lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	switch {
	case req.Command != "":
		m.Command, m.Args = req.Command, req.Args
	case len(req.Args) > 0:
		m.Args = req.Args
	}
	switch {
	case req.Protocol != "":
		m.Protocol, source = req.Protocol, lifecycle.ProtocolFromRequest
	case m.Protocol != "":
		source = lifecycle.ProtocolFromManifest
	}
	if len(req.Env) > 0 {
		env := make(map[string]string, len(m.Env)+len(req.Env))
		for k, v := range m.Env {
			env[k] = v
		}
		for k, v := range req.Env {
			env[k] = v
		}
		m.Env = env
	}
	if err := m.Validate(); err != nil {
		return m, "", lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	if m.Runtime != "" && m.Runtime != a.cfg.Runtime {
		return m, "", lifecycle.Errorf(lifecycle.CodeBadPackage, "package is for runtime %q, this agent provides %q", m.Runtime, a.cfg.Runtime)
	}
	return m, source, nil
}

// codeError maps an error of fetching and unpacking to the protocol: the
// package's own faults are bad_package (422), the store's failures
// code_fetch_failed (502), and a cancelled load a timeout.
func codeError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, code.ErrBadPackage), errors.Is(err, code.ErrDigestMismatch),
		errors.Is(err, code.ErrSizeMismatch), errors.Is(err, code.ErrTooLarge):
		return lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	case ctx.Err() != nil:
		return lifecycle.Errorf(lifecycle.CodeTimeout, "load aborted: %v", context.Cause(ctx))
	default: // ErrNotFound, ErrFetch, ErrUnsupportedScheme, a store's own errors
		return lifecycle.Errorf(lifecycle.CodeCodeFetch, "%v", err)
	}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		wire.WriteError(w, "", 0, lifecycle.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}
