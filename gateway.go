package faas

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/internal/httpx"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// ServeHTTP is the gateway. The function is named by the header
// X-Faas-Function-Id or by the path /invoke/{id}[/rest]; X-Faas-Caller names
// the caller for fair shedding and X-Faas-Priority its class; a missing
// X-Faas-Request-Id is generated, and every response echoes it. Errors carry
// X-Faas-Error-Code and X-Faas-Error-Message with these statuses: 400
// bad_request, 404 function_not_found, 413 too_large, 429 concurrency_limit,
// 503 shed (with Retry-After), 504 timeout (cold start or queue), 502
// instance_failure.
//
// Everything that can refuse a request without its body does so before a
// byte of it is read (an unknown function, a declared size over the limit,
// a bad header, an overloaded dataplane), and closes the connection rather
// than draining the refused body. The body is then buffered (up to
// Limits.MaxBodyBytes, as it arrives, until the request's deadline), so
// that a request that never reached a function can be retried on another
// instance; responses are streamed. Protocol upgrades (WebSocket) are not
// proxied.
func (d *Dataplane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := d.clock.Now()
	rid := r.Header.Get(lifecycle.HeaderRequestID)
	if !validRequestID(rid) {
		rid = d.ids.next()
	}
	refuse := func(fn *function, err error) {
		if fn != nil {
			d.recordErr(fn, start, err, false)
		}
		closeUnread(w, r)
		writeInvokeError(w, rid, err)
	}
	if !d.running() {
		closeUnread(w, r)
		wire.WriteError(w, rid, http.StatusServiceUnavailable, lifecycle.CodeNotReady, d.notRunning().Error())
		return
	}
	rt, perr := parseRoute(r)
	if perr != nil {
		refuse(nil, perr)
		return
	}
	if r.Header.Get("Upgrade") != "" {
		refuse(nil, &lifecycle.Error{Code: lifecycle.CodeBadRequest, Status: http.StatusNotImplemented, Message: "protocol upgrades are not proxied"})
		return
	}
	fn := d.lookup(rt.functionID)
	if r.ContentLength > d.cfg.Limits.MaxBodyBytes {
		refuse(fn, lifecycle.Errorf(lifecycle.CodeTooLarge, "body of %d bytes exceeds %d", r.ContentLength, d.cfg.Limits.MaxBodyBytes))
		return
	}
	var buf [4]peer
	if targets := d.forwardTargets(rt.functionID, r.Header.Get(lifecycle.HeaderForwardedBy), buf[:0]); len(targets) > 0 {
		body, err := d.readBody(w, r, start.Add(d.forwardTimeout(fn)))
		if err != nil {
			refuse(nil, err)
			return
		}
		r.Header.Set(lifecycle.HeaderRequestID, rid)
		if d.forwardHTTP(w, r, targets, body) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body)) // served here after all
		r.ContentLength = int64(len(body))
	}
	if fn == nil {
		d.countUnknown()
		refuse(nil, lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %s is not deployed", strconv.Quote(rt.functionID)))
		return
	}
	prio, err := loadshed.ParsePriority(r.Header.Get(lifecycle.HeaderPriority))
	if err != nil {
		refuse(fn, lifecycle.Errorf(lifecycle.CodeBadRequest, "%v", err))
		return
	}
	caller := r.Header.Get(lifecycle.HeaderCaller)
	if caller == "" {
		caller = fn.id
	}
	c := d.newCall(fn, caller, prio, start)
	c.rid = rid
	if err := c.admitShed(); err != nil {
		refuse(fn, err)
		return
	}
	body, err := d.readBody(w, r, start.Add(c.v.spec.RequestTimeout))
	if err != nil {
		c.abandon(d.clock.Now(), loadshed.Ignored) // the client's fault, not overload
		refuse(fn, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.v.spec.RequestTimeout)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		c.finish(err)
		writeInvokeError(w, rid, err)
		return
	}
	idempotent := strings.EqualFold(r.Header.Get(lifecycle.HeaderIdempotent), "true")
	ex := exchange{d: d, w: w, in: r, path: rt.path, rid: rid, body: body}
	_, err = send(ctx, &c, idempotent, func(route router.Route) (struct{}, router.Outcome, error) {
		o, err := ex.try(ctx, route)
		c.bill(ex.trailer) // the agent's billed duration, when the request reached the function
		return struct{}{}, o, err
	})
	c.finish(err)
	switch {
	case errors.Is(err, httpx.ErrAborted):
		// Part of the response is out: the connection must go.
		panic(http.ErrAbortHandler)
	case err != nil:
		writeInvokeError(w, rid, err)
	}
}

// exchange is the gateway's side of one call: the client's request and
// response writer, and how to send the request to an instance.
type exchange struct {
	d    *Dataplane
	w    http.ResponseWriter
	in   *http.Request
	path string // escaped, for the function
	rid  string
	body []byte
	// trailer is the trailers of the last answer, read after its body.
	trailer http.Header
}

// try sends the request to the instance of route and, unless its agent
// refused it (then nothing is written and the caller may retry), streams
// the answer to the client. An error after the answer started is an
// httpx.ErrAborted: the client went away (Canceled) or the instance broke
// off (InstanceFailed).
func (ex *exchange) try(ctx context.Context, route router.Route) (router.Outcome, error) {
	inst := route.Instance()
	ex.trailer = nil
	out := httpx.Outgoing(ctx, ex.in, inst.Addr, ex.path, ex.bodyReader, int64(len(ex.body)))
	out.Header.Set(lifecycle.HeaderFunctionID, inst.FunctionID)
	out.Header.Set(lifecycle.HeaderRequestID, ex.rid)
	resp, err := ex.d.cfg.Agents.Transport.RoundTrip(out)
	if err != nil {
		return outcomeOfTransport(ctx, err), transportError(ctx, "instance "+inst.ID, err)
	}
	if pe := agentError(resp); pe != nil {
		drain(resp.Body)
		ex.trailer = resp.Trailer
		return router.OutcomeOf(pe), pe
	}
	err = httpx.CopyResponse(ex.w, resp, http.Header{lifecycle.HeaderRequestID: {ex.rid}})
	ex.trailer = resp.Trailer
	var ae *httpx.AbortError
	switch {
	case errors.As(err, &ae) && ae.Upstream && ctx.Err() == nil:
		return router.InstanceFailed, err
	case err != nil:
		return router.Canceled, err
	}
	return router.Success, nil
}

func (ex *exchange) bodyReader() io.ReadCloser { return io.NopCloser(bytes.NewReader(ex.body)) }

// drain reads a little of an answer that is not relayed, so that its
// connection can be reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
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

// closeUnread makes the server close an HTTP/1 connection after a refusal
// instead of reading a body the request will never use: net/http otherwise
// reads up to 256 KiB of an unread body, before it sends the answer and
// again when the handler returns, so a refusal would wait for the very
// body it refuses, and a client that never sends it would hold the
// connection. The read deadline in the past ends those reads at once.
// (HTTP/2 resets the stream instead and needs nothing.)
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 && r.Body != http.NoBody {
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// bodyChunk is the most that readBody allocates before bytes arrive: a
// declared Content-Length is a claim, not a reason to allocate.
const bodyChunk = 32 << 10

// readBody reads the request body up to MaxBodyBytes, until deadline at the
// latest. Its buffer starts at most bodyChunk large and grows with the bytes
// that actually arrive, so a client that declares a large body and sends
// nothing costs nothing.
func (d *Dataplane) readBody(w http.ResponseWriter, r *http.Request, deadline time.Time) ([]byte, error) {
	limit := d.cfg.Limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, lifecycle.Errorf(lifecycle.CodeTooLarge, "body of %d bytes exceeds %d", r.ContentLength, limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	// A client that dribbles its body must not hold the handler beyond
	// the request's deadline; servers without read deadlines (a test
	// recorder) just read.
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(deadline) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	size := bodyChunk
	if r.ContentLength >= 0 {
		size = int(min(r.ContentLength, bodyChunk))
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return nil, lifecycle.Errorf(lifecycle.CodeTooLarge, "body exceeds %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, lifecycle.Errorf(lifecycle.CodeTimeout, "the request body did not arrive within the request timeout")
	case err != nil:
		return nil, lifecycle.Errorf(lifecycle.CodeBadRequest, "reading body: %v", err)
	}
	return buf.Bytes(), nil
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
		wire.WriteError(w, rid, 0, lifecycle.CodeInstanceFailure, string(pe.Code)+": "+pe.Message)
	case errors.As(err, &pe):
		wire.WriteError(w, rid, pe.Status, pe.Code, pe.Message)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		wire.WriteError(w, rid, 499, lifecycle.CodeTimeout, "client closed the request")
	default:
		wire.WriteError(w, rid, 0, lifecycle.CodeInternal, err.Error())
	}
}
