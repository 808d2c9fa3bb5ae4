package faas

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// attempt is the state of one proxied attempt, shared between ServeHTTP and
// the reverse proxy's hooks through the request's context.
type attempt struct {
	route   router.Route
	path    string
	rid     string
	outcome router.Outcome
	err     error // set when the attempt got no usable answer
	ctx     context.Context
	// aborted holds the panic with which the proxy aborted the handler
	// (http.ErrAbortHandler) after the response had started: the request
	// is released first, then the panic goes on to the server.
	aborted any
}

type attemptKey struct{}

// errRetryable makes the proxy hand an agent's refusal to the error
// handler, which leaves the response unwritten so the request can go to
// another instance.
var errRetryable = errors.New("faas: agent refused the request")

func (d *Dataplane) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport: d.cfg.Transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(attemptKey{}).(*attempt)
			inst := a.route.Instance()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = inst.Addr
			// a.path is escaped; Path holds it unescaped, RawPath as sent.
			pr.Out.URL.Path, _ = url.PathUnescape(a.path)
			pr.Out.URL.RawPath = a.path
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.Out.Host = inst.Addr
			pr.Out.Header.Set(lifecycle.HeaderFunctionID, inst.FunctionID)
			pr.Out.Header.Set(lifecycle.HeaderRequestID, a.rid)
		},
		ModifyResponse: func(resp *http.Response) error {
			a := resp.Request.Context().Value(attemptKey{}).(*attempt)
			if pe := agentError(resp); pe != nil {
				a.outcome, a.err = router.OutcomeOf(pe), pe
				return errRetryable
			}
			resp.Header.Set(lifecycle.HeaderRequestID, a.rid)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a := r.Context().Value(attemptKey{}).(*attempt)
			if errors.Is(err, errRetryable) {
				return // a.err holds the agent's error
			}
			a.outcome = outcomeOfTransport(a.ctx, err)
			if errors.Is(err, http.ErrBodyReadAfterClose) || isMaxBytes(err) {
				a.outcome = router.Rejected
			}
			a.err = transportError(a.ctx, "instance "+a.route.Instance().ID, err)
		},
		FlushInterval: -1, // stream responses as they come (server-sent events, long polls)
		ErrorLog:      slog.NewLogLogger(d.log.With("component", "proxy").Handler(), slog.LevelInfo),
	}
}

func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// ServeHTTP is the gateway. The function is named by the header
// X-Faas-Function-Id or by the path /invoke/{id}[/rest]; X-Faas-Caller names
// the caller for fair shedding and X-Faas-Priority its class; a missing
// X-Faas-Request-Id is generated, and every response echoes it. Errors carry
// X-Faas-Error-Code and X-Faas-Error-Message with these statuses: 400
// bad_request, 404 function_not_found, 413 too_large, 429 concurrency_limit,
// 503 shed (with Retry-After), 504 timeout (cold start or queue), 502
// instance_failure.
//
// The body is buffered (up to Config.MaxBodyBytes), so that a request that
// never reached a function can be retried on another instance; responses are
// streamed.
func (d *Dataplane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := r.Header.Get(lifecycle.HeaderRequestID)
	if !validRequestID(rid) {
		rid = d.ids.next()
	}
	if !d.running() {
		closeUnread(w, r)
		lifecycle.WriteError(w, rid, http.StatusServiceUnavailable, lifecycle.CodeNotReady, d.notRunning().Error())
		return
	}
	rt, perr := parseRoute(r)
	if perr != nil {
		closeUnread(w, r)
		lifecycle.WriteErr(w, rid, perr)
		return
	}
	// Everything that can refuse a request without its body does so before
	// a byte of it is read: a declared size over the limit, an unknown
	// function, a bad header, an overloaded dataplane.
	fn := d.lookup(rt.functionID)
	if r.ContentLength > d.cfg.MaxBodyBytes {
		if fn != nil {
			d.record(fn, start, lifecycle.CodeTooLarge, false)
		}
		closeUnread(w, r)
		lifecycle.WriteError(w, rid, 0, lifecycle.CodeTooLarge, "body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes exceeds "+strconv.FormatInt(d.cfg.MaxBodyBytes, 10))
		return
	}
	var body []byte
	bodyRead := false
	if addr, ok := d.ownerElsewhere(rt.functionID, r.Header.Get(HeaderForwarded)); ok {
		var code lifecycle.ErrorCode
		var msg string
		if body, code, msg = d.readBody(w, r, start.Add(d.forwardTimeout(fn))); code != "" {
			lifecycle.WriteError(w, rid, 0, code, msg)
			return
		}
		bodyRead = true
		r.Header.Set(lifecycle.HeaderRequestID, rid)
		if d.forwardHTTP(w, r, addr, body) {
			return
		}
	}
	if fn == nil {
		d.countUnknown()
		if !bodyRead {
			closeUnread(w, r)
		}
		lifecycle.WriteError(w, rid, 0, lifecycle.CodeFunctionNotFound, "function "+strconv.Quote(rt.functionID)+" is not deployed")
		return
	}
	v := fn.version()
	prio, err := loadshed.ParsePriority(r.Header.Get(lifecycle.HeaderPriority))
	if err != nil {
		d.record(fn, start, lifecycle.CodeBadRequest, false)
		if !bodyRead {
			closeUnread(w, r)
		}
		lifecycle.WriteError(w, rid, 0, lifecycle.CodeBadRequest, err.Error())
		return
	}
	idempotent := strings.EqualFold(r.Header.Get(lifecycle.HeaderIdempotent), "true")
	caller := r.Header.Get(lifecycle.HeaderCaller)
	if caller == "" {
		caller = fn.id
	}

	ctx, cancel := context.WithTimeout(r.Context(), v.spec.RequestTimeout)
	defer cancel()
	l, err := d.admitShed(fn, caller, prio, start)
	if err != nil {
		d.recordErr(fn, start, err, false)
		if !bodyRead {
			closeUnread(w, r)
		}
		writeInvokeError(w, rid, err)
		return
	}
	if !bodyRead {
		var code lifecycle.ErrorCode
		var msg string
		if body, code, msg = d.readBody(w, r, start.Add(v.spec.RequestTimeout)); code != "" {
			l.done(time.Now(), loadshed.Ignored) // the client's fault, not overload
			d.record(fn, start, code, false)
			lifecycle.WriteError(w, rid, 0, code, msg)
			return
		}
	}
	if l, err = d.acquire(ctx, l, v, start); err != nil {
		d.recordErr(fn, start, err, l.waited)
		writeInvokeError(w, rid, err)
		return
	}

	a := &attempt{path: rt.path, rid: rid, ctx: ctx}
	out := r.WithContext(context.WithValue(ctx, attemptKey{}, a))
	out.Header.Del(lifecycle.HeaderFunctionID)
	_, err = forwardOnce(d, ctx, &l, v, idempotent, func(route router.Route) (struct{}, router.Outcome, error) {
		a.route, a.outcome, a.err = route, router.Success, nil
		setBody(out, body)
		d.serveAttempt(w, out)
		if a.aborted != nil {
			// Part of the response is out: never retry. Canceled, because
			// it is mostly the client going away, not the instance.
			return struct{}{}, router.Canceled, nil
		}
		return struct{}{}, a.outcome, a.err
	})
	if a.aborted != nil {
		d.recordErr(fn, start, context.Canceled, l.waited)
		panic(a.aborted)
	}
	if err != nil {
		d.recordErr(fn, start, err, l.waited)
		writeInvokeError(w, rid, err)
		return
	}
	d.record(fn, start, "", l.waited)
}

// closeUnread makes the server close an HTTP/1 connection after a refusal
// instead of reading a body the request will never use: net/http otherwise
// reads up to 256 KiB of an unread body, before it sends the answer and
// again when the handler returns, so a refusal would wait for the very
// body it refuses, and a client that never sends it would hold the
// connection. The read deadline in the past ends those reads at once.
// (HTTP/2 resets the stream instead and needs nothing.)
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// forwardTimeout bounds reading the body of a request forwarded to its
// owner: the function's request timeout when it is deployed here, else the
// default one.
func (d *Dataplane) forwardTimeout(fn *function) time.Duration {
	if fn != nil {
		return fn.version().spec.RequestTimeout
	}
	return DefaultRequestTimeout
}

// serveAttempt runs the reverse proxy once. When the response breaks off
// after its headers went out (the client went away, or the instance died
// mid-body), the proxy aborts the handler with http.ErrAbortHandler;
// serveAttempt keeps that panic in the attempt, so that the slot, the limit
// and the shedder's ticket are released before it goes on to the server.
func (d *Dataplane) serveAttempt(w http.ResponseWriter, r *http.Request) {
	a := r.Context().Value(attemptKey{}).(*attempt)
	defer func() {
		if p := recover(); p != nil {
			a.aborted = p
		}
	}()
	d.proxy.ServeHTTP(w, r)
}

// setBody gives r the buffered body, rewound for each attempt. GetBody lets
// the transport resend on a reused connection that turns out to be dead
// before anything was written to it.
func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}

// bodyChunk is the most that readBody allocates before bytes arrive: a
// declared Content-Length is a claim, not a reason to allocate.
const bodyChunk = 32 << 10

// readBody reads the request body up to MaxBodyBytes, until deadline at the
// latest. Its buffer starts at most bodyChunk large and grows with the bytes
// that actually arrive, so a client that declares a large body and sends
// nothing costs nothing.
func (d *Dataplane) readBody(w http.ResponseWriter, r *http.Request, deadline time.Time) ([]byte, lifecycle.ErrorCode, string) {
	if r.ContentLength > d.cfg.MaxBodyBytes {
		return nil, lifecycle.CodeTooLarge, "body of " + strconv.FormatInt(r.ContentLength, 10) + " bytes exceeds " + strconv.FormatInt(d.cfg.MaxBodyBytes, 10)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, "", ""
	}
	// A client that dribbles its body must not hold the handler beyond
	// the request's deadline; servers without a read deadline support
	// (e.g. a test recorder) just read.
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(deadline) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	size := bodyChunk
	if r.ContentLength >= 0 {
		size = int(min(r.ContentLength, bodyChunk))
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, d.cfg.MaxBodyBytes))
	switch {
	case isMaxBytes(err):
		return nil, lifecycle.CodeTooLarge, "body exceeds " + strconv.FormatInt(d.cfg.MaxBodyBytes, 10) + " bytes"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, lifecycle.CodeTimeout, "the request body did not arrive within the request timeout"
	case err != nil:
		return nil, lifecycle.CodeBadRequest, "reading body: " + err.Error()
	}
	return buf.Bytes(), "", ""
}

// instanceLevel reports codes that describe one instance, not the function
// or the dataplane.
func instanceLevel(c lifecycle.ErrorCode) bool {
	switch c {
	case lifecycle.CodeInstanceReassigned, lifecycle.CodeNoFunction, lifecycle.CodeNotReady, lifecycle.CodeFunctionExited:
		return true
	}
	return false
}

// writeInvokeError writes err as the gateway's error response; a shed
// request gets Retry-After in whole seconds.
func writeInvokeError(w http.ResponseWriter, rid string, err error) {
	if after, ok := RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
	}
	var pe *lifecycle.Error
	switch {
	case errors.As(err, &pe) && instanceLevel(pe.Code):
		// An instance's refusal that could not be retried elsewhere: to
		// the client the function failed, it did not vanish (404) nor was
		// the dataplane overloaded (503).
		lifecycle.WriteError(w, rid, 0, lifecycle.CodeInstanceFailure, string(pe.Code)+": "+pe.Message)
	case errors.As(err, &pe):
		lifecycle.WriteError(w, rid, pe.Status, pe.Code, pe.Message)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		lifecycle.WriteError(w, rid, 499, lifecycle.CodeTimeout, "client closed the request")
	default:
		lifecycle.WriteError(w, rid, 0, lifecycle.CodeInternal, err.Error())
	}
}
