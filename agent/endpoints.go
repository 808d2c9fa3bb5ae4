package agent

import (
	"net/http"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/internal/latency"
	"github.com/faasplane/faas/lifecycle"
)

// current returns the loaded function, or answers for its absence: 503
// not_ready while a load runs, else 404 no_function.
func (a *Agent) current(w http.ResponseWriter, r *http.Request) *function {
	if f := a.fn.Load(); f != nil {
		return f
	}
	a.mu.Lock()
	loading, broken := a.loading, a.brokenLocked()
	a.mu.Unlock()
	switch {
	case loading:
		wire.WriteError(w, requestID(r), 0, lifecycle.CodeNotReady, "a load is in progress")
	case broken != "":
		wire.WriteError(w, requestID(r), 0, lifecycle.CodeFunctionExited, "this pod is unusable and must be deleted: "+broken)
	default:
		wire.WriteError(w, requestID(r), 0, lifecycle.CodeNoFunction, "no function is loaded on this pod")
	}
	return nil
}

// serveInitialize handles POST /v1/initialize: call the init hook once.
// Attempts are serialized; after a success further calls are no-ops. A
// failure keeps the process, so the caller retries cheaply.
func (a *Agent) serveInitialize(w http.ResponseWriter, r *http.Request) {
	rid := requestID(r)
	if !onlyMethod(w, r, http.MethodPost) {
		return
	}
	req, err := wire.DecodeInitializeRequest(http.MaxBytesReader(w, r.Body, wire.MaxRequestBytes))
	if err != nil {
		wire.WriteErr(w, rid, err)
		return
	}
	f := a.current(w, r)
	if f == nil {
		return
	}
	if f.id != req.FunctionID {
		wire.WriteError(w, rid, 0, lifecycle.CodeInstanceReassigned, "this pod serves another function")
		return
	}
	start := time.Now()
	f.initMu.Lock()
	defer f.initMu.Unlock()
	resp := lifecycle.InitializeResponse{FunctionID: f.id}
	if f.ready.Load() {
		resp.Attempts, resp.AlreadyInitialized = f.attempts, true
		writeJSON(w, resp)
		return
	}
	if f.proc.exited.Load() {
		wire.WriteError(w, rid, 0, lifecycle.CodeFunctionExited, "the function process has exited")
		return
	}
	log := a.log.With("function_id", f.id)
	if f.initPath != "" {
		timeout := a.cfg.InitTimeout
		if req.TimeoutMillis > 0 {
			timeout = time.Duration(req.TimeoutMillis) * time.Millisecond
		}
		f.attempts++
		if err := f.callInit(r.Context(), timeout); err != nil {
			if err == errProcessExited {
				wire.WriteError(w, rid, 0, lifecycle.CodeFunctionExited, "the function process exited during init")
				return
			}
			log.Warn("init failed", "attempt", f.attempts, "err", err)
			wire.WriteError(w, rid, 0, lifecycle.CodeInitFailed, err.Error())
			return
		}
	}
	f.ready.Store(true)
	a.mu.Lock()
	a.notifyLocked()
	a.mu.Unlock()
	resp.Attempts = f.attempts
	resp.Millis = millis(time.Since(start))
	log.Info("function initialized", "attempts", f.attempts, "ms", resp.Millis)
	writeJSON(w, resp)
}

// servePing handles GET /v1/ping: 200 with the function when it is loaded
// (state "loaded" until initialized, then "ready"), 404 no_function on a
// generic pod, 503 not_ready while loading, 503 function_exited when the
// process died.
func (a *Agent) servePing(w http.ResponseWriter, r *http.Request) {
	if !onlyMethod(w, r, http.MethodGet) {
		return
	}
	f := a.current(w, r)
	if f == nil {
		return
	}
	if f.proc.exited.Load() {
		wire.WriteError(w, requestID(r), 0, lifecycle.CodeFunctionExited,
			"the function process has exited ("+f.proc.exitText+")")
		return
	}
	state := lifecycle.AgentLoaded
	if f.ready.Load() {
		state = lifecycle.AgentReady
	}
	writeJSON(w, lifecycle.PingResponse{FunctionID: f.id, State: state, PID: f.proc.pid, Node: a.cfg.Node})
}

// state returns the agent's state (one of lifecycle's Agent... states), the
// loaded function, and the channel that the next change of state other
// than the process's exit closes.
func (a *Agent) state() (string, *function, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fn.Load()
	switch {
	case f == nil && a.loading:
		return lifecycle.AgentLoading, nil, a.changed
	case f == nil && a.brokenLocked() != "":
		return lifecycle.AgentFailed, nil, a.changed
	case f == nil:
		return lifecycle.AgentGeneric, nil, a.changed
	case f.proc.exited.Load():
		return lifecycle.AgentExited, f, a.changed
	case f.ready.Load():
		return lifecycle.AgentReady, f, a.changed
	default:
		return lifecycle.AgentLoaded, f, a.changed
	}
}

// serveWatch handles GET /v1/watch?state=S&wait=D: it answers as soon as
// the agent's state is not S, at the latest after D (see
// lifecycle.WatchResponse). The death of the function process ends the
// wait at once, so the dataplane learns of it without asking.
func (a *Agent) serveWatch(w http.ResponseWriter, r *http.Request) {
	if !onlyMethod(w, r, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	wait := lifecycle.DefaultWatchWait
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			wire.WriteError(w, requestID(r), 0, lifecycle.CodeBadRequest, "wait: want a duration such as 30s")
			return
		}
		wait = min(d, lifecycle.MaxWatchWait)
	}
	known := q.Get("state")
	state, f, changed := a.state()
	if state == known {
		var exited <-chan struct{}
		if f != nil {
			exited = f.proc.done
		} else if b := a.waitingBootstrap(); b != nil {
			exited = b.proc.done // its death breaks the pod
		}
		t := time.NewTimer(wait)
		a.watching.Add(1)
		select {
		case <-changed:
		case <-exited:
		case <-t.C:
		case <-r.Context().Done():
		case <-a.ctx.Done():
		}
		a.watching.Add(-1)
		t.Stop()
		state, f, _ = a.state()
	}
	resp := lifecycle.WatchResponse{State: state}
	if f != nil {
		resp.FunctionID = f.id
		if state == lifecycle.AgentExited {
			resp.Exit = f.proc.exitText
		}
	} else if state == lifecycle.AgentFailed {
		a.mu.Lock()
		resp.Exit = a.brokenLocked()
		a.mu.Unlock()
	}
	writeJSON(w, resp)
}

// serveStats handles GET /v1/stats (see [Agent.Stats]).
func (a *Agent) serveStats(w http.ResponseWriter, r *http.Request) {
	if !onlyMethod(w, r, http.MethodGet) {
		return
	}
	writeJSON(w, a.stats())
}

// Stats returns the agent's statistics, as GET /v1/stats answers them.
// Completed counts the invocations that reached the function, whatever
// their outcome (the latency histogram's count); Failed those of them that
// got no answer, a 5xx, or were aborted because the caller left mid-body;
// Rejected the requests refused before the function (wrong function, not
// ready, over the limit); BilledMillis the billed time of those that
// reached it.
func (a *Agent) Stats() lifecycle.Stats { return a.stats() }

func (a *Agent) stats() lifecycle.Stats {
	state, _, _ := a.state()
	st := lifecycle.Stats{
		Rejected: a.rejected.Load(), Uptime: time.Since(a.start),
		Runtime: a.cfg.Runtime, Instance: a.cfg.Instance, State: state,
		MemoryLimitKills: a.memKills.Load(),
		LogLines:         a.logs.lines.Load(), LogLinesDropped: a.logs.dropped.Load(), LogLinesTruncated: a.logs.truncated.Load(),
	}
	if f := a.fn.Load(); f != nil {
		st.FunctionID = f.id
		st.InFlight, st.Limit = f.slots.Counts()
		st.Failed = f.failed.Load()
		st.Latency = latencySummary(&f.latency)
		st.Completed = st.Latency.Count
		st.BilledMillis = f.billed.Load()
		st.HotLoad, st.Protocol, st.ProtocolSource = f.hot, f.protocol, f.protocolSource
		st.MemoryLimitBytes, st.MemoryLimit = f.limits.MemoryBytes, f.memLimit
		st.MilliCPU, st.CPULimit = f.limits.MilliCPU, f.cpuLimit
	}
	return st
}

// waitingBootstrap returns the bootstrap waiting for its hot load, if any.
func (a *Agent) waitingBootstrap() *bootstrapProc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.boot
}

// latencySummary converts a histogram into the protocol's summary in
// milliseconds.
func latencySummary(h *latency.Histogram) lifecycle.LatencySummary {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	n := h.Count()
	if n == 0 {
		return lifecycle.LatencySummary{}
	}
	return lifecycle.LatencySummary{
		Count: int64(n), Mean: ms(h.Mean()),
		P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)),
		Max: ms(h.Max()),
	}
}
