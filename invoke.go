package faas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// Request is an invocation for [Dataplane.Invoke], the in-process path that
// bypasses the HTTP gateway (e.g. a message-queue trigger consumer).
type Request struct {
	// FunctionID names the function. Required.
	FunctionID string
	// Body is the payload (at most Config.MaxBodyBytes).
	Body []byte
	// Method is the HTTP method the function sees (default POST).
	Method string
	// Path is the path the function sees (default "/"), escaped as in a
	// request line, with an optional "?query".
	Path string
	// Header is passed to the function (nil: none).
	Header http.Header
	// Caller names the tenant for fair load shedding (default the
	// function ID).
	Caller string
	// Priority is the request's shedding class.
	Priority loadshed.Priority
	// Idempotent allows a retry on another instance after the request
	// reached a function that failed.
	Idempotent bool
	// RequestID is echoed in logs and errors; generated when empty.
	RequestID string
}

// Response is a function's answer to [Dataplane.Invoke]. A function's own
// error status (say 500) is a Response, not an error: Invoke returns an
// error only when the dataplane or the agent could not get an answer.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	RequestID  string
	// Waited reports that the request waited for capacity (a cold start
	// or a full instance) instead of finding a free slot at once.
	Waited bool
}

// Invoke runs one invocation in-process: admission, routing, a cold start
// when needed, and the request to the instance's agent. Errors are
// *lifecycle.Error values (test them with errors.Is against
// lifecycle.CodeFunctionNotFound, lifecycle.CodeShed, lifecycle.CodeTimeout...);
// [RetryAfter] extracts the retry hint of a shed request.
func (d *Dataplane) Invoke(ctx context.Context, req *Request) (*Response, error) {
	start := d.clock.Now()
	rid := req.RequestID
	if !validRequestID(rid) {
		rid = d.ids.next()
	}
	if !d.running() {
		return nil, d.notRunning()
	}
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	if !validMethod(method) {
		return nil, withRequestID(lifecycle.Errorf(lifecycle.CodeBadRequest, "invalid method %q", method), rid)
	}
	var buf [4]peer
	if targets := d.forwardTargets(req.FunctionID, "", buf[:0]); len(targets) > 0 {
		if resp, reached, err := d.forwardInvoke(ctx, targets, req, method, rid); reached {
			if err != nil {
				return nil, withRequestID(err, rid)
			}
			resp.RequestID = rid
			return resp, nil
		}
	}
	fn := d.lookup(req.FunctionID)
	if fn == nil {
		d.countUnknown()
		return nil, withRequestID(lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %q is not deployed", req.FunctionID), rid)
	}
	refuse := func(err error) (*Response, error) {
		d.recordErr(fn, start, err, false)
		return nil, withRequestID(err, rid)
	}
	if int64(len(req.Body)) > d.cfg.Limits.MaxBodyBytes {
		return refuse(lifecycle.Errorf(lifecycle.CodeTooLarge, "body of %d bytes exceeds %d", len(req.Body), d.cfg.Limits.MaxBodyBytes))
	}
	if _, err := url.ParseRequestURI(invokePath(req.Path)); err != nil {
		return refuse(lifecycle.Errorf(lifecycle.CodeBadRequest, "invalid path %q: %v", req.Path, err))
	}
	caller := req.Caller
	if caller == "" {
		caller = req.FunctionID
	}
	c := d.newCall(fn, caller, req.Priority, start)
	c.rid = rid
	ctx, cancel := context.WithTimeout(ctx, c.v.spec.RequestTimeout)
	defer cancel()
	if err := c.admit(ctx); err != nil {
		c.finish(err)
		return nil, withRequestID(err, rid)
	}
	resp, err := send(ctx, &c, req.Idempotent, func(rt router.Route) (*Response, router.Outcome, error) {
		return d.roundTrip(ctx, &c, rt, req, method, rid)
	})
	c.finish(err)
	if err != nil {
		return nil, withRequestID(err, rid)
	}
	resp.RequestID, resp.Waited = rid, c.waited
	return resp, nil
}

// roundTrip sends one in-process request of c to the instance of rt.
func (d *Dataplane) roundTrip(ctx context.Context, c *call, rt router.Route, req *Request, method, rid string) (*Response, router.Outcome, error) {
	inst := rt.Instance()
	hreq, err := newInvokeRequest(ctx, inst.Addr, req, method, rid)
	if err != nil {
		return nil, router.Rejected, err
	}
	hreq.Header.Set(lifecycle.HeaderFunctionID, inst.FunctionID)
	resp, err := d.cfg.Agents.Transport.RoundTrip(hreq)
	if err != nil {
		return nil, outcomeOfTransport(ctx, err), transportError(ctx, "instance "+inst.ID, err)
	}
	out, err := d.readResponse(ctx, resp, "instance "+inst.ID)
	c.bill(resp.Trailer) // the agent's billed duration, when the request reached the function
	var pe *lifecycle.Error
	switch {
	case err == nil:
		return out, router.Success, nil
	case errors.As(err, &pe) && wire.FromFaasplane(resp):
		return nil, router.OutcomeOf(pe), err // the agent's refusal
	case errors.Is(err, errResponseTooLarge):
		return nil, router.Success, err // the instance answered; the answer is too big
	default:
		return nil, outcomeOfTransport(ctx, err), err
	}
}

// newInvokeRequest builds the HTTP request of an in-process invocation to
// addr: the caller's method, path, headers and body, and the request ID.
func newInvokeRequest(ctx context.Context, addr string, req *Request, method, rid string) (*http.Request, error) {
	hreq, err := http.NewRequestWithContext(ctx, method, "http://"+addr+invokePath(req.Path), bytes.NewReader(req.Body))
	if err != nil {
		return nil, lifecycle.Errorf(lifecycle.CodeBadRequest, "invalid path %q: %v", req.Path, err)
	}
	if req.Header != nil {
		hreq.Header = req.Header.Clone()
	}
	hreq.Header.Set(lifecycle.HeaderRequestID, rid)
	return hreq, nil
}

var errResponseTooLarge = errors.New("faas: response too large")

// readResponse turns the answer of an agent (or of another node's gateway)
// into a Response, reading at most MaxResponseBytes, or into the
// faasplane error it carries. It closes resp.Body.
func (d *Dataplane) readResponse(ctx context.Context, resp *http.Response, from string) (*Response, error) {
	defer resp.Body.Close()
	if pe := agentError(resp); pe != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, pe
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, d.cfg.Limits.MaxResponseBytes+1))
	if err != nil {
		return nil, transportError(ctx, from, err)
	}
	if int64(len(body)) > d.cfg.Limits.MaxResponseBytes {
		return nil, fmt.Errorf("%w: %w", errResponseTooLarge,
			lifecycle.Errorf(lifecycle.CodeInstanceFailure, "%s: response exceeds %d bytes", from, d.cfg.Limits.MaxResponseBytes))
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// invokePath is the path an Invoke request sends: Request.Path, an escaped
// path with an optional query, starting with "/".
func invokePath(p string) string {
	if p == "" || p[0] != '/' {
		return "/" + p
	}
	return p
}

// agentError returns the protocol error an agent (or, when forwarding,
// another gateway) answered with, or nil for a function's own response,
// whatever X-Faas-Error-* headers the function set.
func agentError(resp *http.Response) *lifecycle.Error {
	if !wire.FromFaasplane(resp) {
		return nil
	}
	return lifecycle.ErrorFromResponse(resp)
}

// outcomeOfTransport classifies a transport error for the router. A
// request's own deadline says nothing about the instance.
func outcomeOfTransport(ctx context.Context, err error) router.Outcome {
	if ctx.Err() != nil {
		return router.Canceled
	}
	return router.OutcomeOf(err)
}

// transportError turns a failure to get an answer into a wire error.
func transportError(ctx context.Context, target string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return lifecycle.Errorf(lifecycle.CodeTimeout, "request timed out")
	}
	if ctx.Err() != nil {
		return fmt.Errorf("faas: %w", ctx.Err())
	}
	return lifecycle.Errorf(lifecycle.CodeInstanceFailure, "%s: %v", target, err)
}

func withRequestID(err error, rid string) error {
	var pe *lifecycle.Error
	if errors.As(err, &pe) && pe.RequestID == "" {
		pe.RequestID = rid
	}
	return err
}

// validMethod reports whether m is an HTTP token.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
