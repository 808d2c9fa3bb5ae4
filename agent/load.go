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

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

// serveLoad handles POST /v1/load: fetch, verify and unpack the code, start
// the function process and answer once it listens. One load at a time; a
// pod that holds a function refuses further loads (409 already_loaded). A
// failed load leaves the agent generic again, with nothing left behind.
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
	switch {
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
		a.mu.Unlock()
		if f != nil {
			f.stop(a.cfg.StopGrace)
		}
		_ = os.RemoveAll(dir)
		log.Warn("load failed", "err", err)
		wire.WriteErr(w, rid, err)
		return
	}
	a.dirs = append(a.dirs, dir)
	a.fn.Store(f)
	a.mu.Unlock()
	log.Info("function loaded", "pid", resp.PID, "addr", f.proc.addr, "protocol", resp.Protocol, "cache_hit", resp.CacheHit,
		"fetch_ms", resp.Timings.FetchMillis, "unpack_ms", resp.Timings.UnpackMillis, "start_ms", resp.Timings.StartMillis)
	writeJSON(w, resp)
}

// load does the work of a load into dir. On error it returns the function
// when its process was started, for the caller to stop.
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

	m, err := a.manifest(req, dir)
	if err != nil {
		return nil, resp, err
	}
	path, err := m.Resolve(dir, exec.LookPath)
	if err != nil {
		return nil, resp, lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	resp.Protocol = m.Protocol

	t1 := time.Now()
	env := append([]string(nil), a.cfg.BaseEnv...)
	for k, v := range m.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "FAAS_FUNCTION_ID="+req.FunctionID, "FAAS_RUNTIME="+a.cfg.Runtime)
	if req.Limits.MemoryBytes > 0 {
		env = append(env, "FAAS_MEMORY_BYTES="+strconv.FormatInt(req.Limits.MemoryBytes, 10))
	}
	proc, err := startProcess(processSpec{
		functionID: req.FunctionID, path: path, args: m.Args, dir: dir, env: env, runAs: a.cfg.RunAs, logger: a.log,
	})
	if err != nil {
		return nil, resp, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	f := newFunction(req, m, dir, proc, a.log)
	resp.PID = proc.pid

	startTimeout := a.cfg.StartTimeout
	if req.StartTimeoutMillis > 0 {
		startTimeout = time.Duration(req.StartTimeoutMillis) * time.Millisecond
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := proc.waitReady(sctx); err != nil {
		return f, resp, lifecycle.Errorf(lifecycle.CodeLoadFailed, "%v", err)
	}
	resp.Timings.StartMillis = millis(time.Since(t1))
	return f, resp, nil
}

// manifest reads the package's manifest and applies the request's
// overrides: Command (with Args) replaces the manifest's command and
// arguments, Args alone its arguments, Protocol its protocol, and Env is
// added over its environment.
func (a *Agent) manifest(req *lifecycle.LoadRequest, dir string) (code.Manifest, error) {
	m, err := code.ReadManifest(dir)
	if errors.Is(err, code.ErrNoManifest) && req.Command != "" {
		m, err = code.Manifest{}, nil
	}
	if err != nil {
		return m, lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	switch {
	case req.Command != "":
		m.Command, m.Args = req.Command, req.Args
	case len(req.Args) > 0:
		m.Args = req.Args
	}
	if req.Protocol != "" {
		m.Protocol = req.Protocol
	}
	if m.Protocol == "" {
		m.Protocol = code.ProtocolHTTP1
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
		return m, lifecycle.Errorf(lifecycle.CodeBadPackage, "%v", err)
	}
	if m.Runtime != "" && m.Runtime != a.cfg.Runtime {
		return m, lifecycle.Errorf(lifecycle.CodeBadPackage, "package is for runtime %q, this agent provides %q", m.Runtime, a.cfg.Runtime)
	}
	return m, nil
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
