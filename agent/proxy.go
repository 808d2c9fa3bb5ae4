package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/lifecycle"
)

// serveInvoke proxies an invocation to the function process, whatever its
// path, after the checks that keep a stale route or an overload from
// reaching it: the request must name the loaded function (else 404
// instance_reassigned), the process must be alive (503 function_exited:
// the request provably did not reach it) and initialized (503 not_ready),
// and a concurrency slot must be free (429 concurrency_limit). All of them
// are an atomic load or a compare-and-swap: no lock on the hot path.
func (a *Agent) serveInvoke(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(lifecycle.HeaderFunctionID)
	if id == "" {
		a.reject(w, r, lifecycle.CodeBadRequest, "missing "+lifecycle.HeaderFunctionID+" header")
		return
	}
	f := a.fn.Load()
	switch {
	case f == nil:
		a.reject(w, r, lifecycle.CodeInstanceReassigned, "no function is loaded on this pod")
		return
	case f.id != id:
		a.reject(w, r, lifecycle.CodeInstanceReassigned, "this pod serves another function")
		return
	case f.proc.exited.Load():
		a.reject(w, r, lifecycle.CodeFunctionExited, "the function process has exited")
		return
	case !f.ready.Load():
		a.reject(w, r, lifecycle.CodeNotReady, "the function is not initialized")
		return
	}
	if !f.slots.TryAcquire() {
		a.reject(w, r, lifecycle.CodeConcurrencyLimit, "instance at its concurrency limit")
		return
	}
	defer f.slots.Release()
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		// Stream the function's answer while the request body still
		// arrives; without this the HTTP/1 server stops reading the body
		// once the response starts.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	if f.timeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	// The billed time follows the body, as a trailer (declared before the
	// status line, set once the body is out).
	h := w.Header()
	h["Trailer"] = append(h["Trailer"], lifecycle.HeaderBilledMillis)
	start := time.Now()
	defer func() {
		// Every invocation that reached the function is recorded and
		// billed, also one whose caller left mid-body: the proxy then
		// panics with http.ErrAbortHandler, which counts as a failure and
		// goes on up to the server, which drops the connection (and the
		// trailer with it).
		d := time.Since(start)
		f.latency.Record(d)
		if !refusedByAgent(h) {
			ms := billedMillis(d)
			f.billed.Add(ms)
			h[lifecycle.HeaderBilledMillis] = []string{strconv.FormatInt(ms, 10)}
		}
		if p := recover(); p != nil {
			f.failed.Add(1)
			panic(p)
		}
	}()
	f.proxy.ServeHTTP(w, r)
}

// billedMillis rounds d up to whole milliseconds, at least one.
func billedMillis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}

// refusedByAgent reports whether the agent's proxy answered the request
// itself with function_exited: the request provably did not reach the
// function, so it is not billed. Function responses never carry the
// error-source marker (ModifyResponse strips it).
func refusedByAgent(h http.Header) bool {
	return h.Get(lifecycle.HeaderErrorSource) == wire.ErrorSource &&
		h.Get(lifecycle.HeaderErrorCode) == string(lifecycle.CodeFunctionExited)
}

func (a *Agent) reject(w http.ResponseWriter, r *http.Request, c lifecycle.ErrorCode, msg string) {
	a.rejected.Add(1)
	wire.WriteError(w, requestID(r), 0, c, msg)
}

// proxyBufferSize is the size of the proxy's copy buffers.
const proxyBufferSize = 32 << 10

// bufferPool recycles the proxy's copy buffers. It pools pointers to
// arrays, not slices: a slice put in a sync.Pool needs a new *[]byte per
// Put, while the array pointer is the buffer itself, so a recycled buffer
// costs no allocation.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[proxyBufferSize]byte); ok {
		return v[:]
	}
	return new([proxyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= proxyBufferSize {
		b.p.Put((*[proxyBufferSize]byte)(buf[:proxyBufferSize]))
	}
}

var proxyBuffers = &bufferPool{}

func (f *function) newProxy(log *slog.Logger) *httputil.ReverseProxy {
	addr := f.proc.addr
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  f.transport,
		BufferPool: proxyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 500 {
				f.failed.Add(1)
			}
			// Only faasplane may mark an error as its own: a function that
			// passes on another service's X-Faas-Error-* headers must not
			// make the dataplane think the agent refused the request.
			resp.Header.Del(lifecycle.HeaderErrorSource)
			// Nor may it send the billed time.
			resp.Header.Del(lifecycle.HeaderBilledMillis)
			delete(resp.Trailer, lifecycle.HeaderBilledMillis)
			// A trailer needs a chunked body on HTTP/1.1: without the
			// length, the server chunks it (a response that has no body
			// keeps its length, and carries no trailer).
			if resp.Request.Method != http.MethodHead && bodyAllowed(resp.StatusCode) {
				resp.Header.Del("Content-Length")
			}
			return nil
		},
		ErrorHandler: f.proxyError,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	if f.protocol == lifecycle.ProtocolH2C {
		rp.FlushInterval = -1 // gRPC streams message by message
	}
	return rp
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// proxyError answers an invocation the function did not answer.
func (f *function) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	f.failed.Add(1)
	rid := requestID(r)
	switch {
	case errors.Is(r.Context().Err(), context.DeadlineExceeded):
		wire.WriteError(w, rid, 0, lifecycle.CodeTimeout, "the function did not answer within its timeout")
	case notDelivered(err) && !replayable(r):
		// The process does not take connections: it is dying or dead
		// (its exit may not be reaped yet), and the request provably did
		// not reach it, so the caller may send it elsewhere.
		wire.WriteError(w, rid, 0, lifecycle.CodeFunctionExited, "the function process does not accept connections")
	case f.proc.exited.Load():
		// It may have died of this very request: the request reached it,
		// so this is not function_exited (which promises it did not).
		msg := "the function process exited during the request"
		if f.proc.memKilled.Load() {
			msg = "the function process exceeded its memory limit during the request (" + f.proc.exitText + ")"
		}
		wire.WriteError(w, rid, 0, lifecycle.CodeInstanceFailure, msg)
	default:
		wire.WriteError(w, rid, 0, lifecycle.CodeInstanceFailure, "function: "+err.Error())
	}
}

// replayable reports whether the transport may have sent r more than once:
// it retries such requests on a new connection when a reused one fails, so
// a failed dial then does not prove that the first try never arrived.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// notDelivered reports whether err says the connection to the function was
// never made: a refused or failed dial.
func notDelivered(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
