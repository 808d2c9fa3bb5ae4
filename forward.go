package faas

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/faasplane/faas/internal/httpx"
	"github.com/faasplane/faas/internal/wire"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// neverReached reports whether a forward failed before the peer could
// have run anything: the connection was refused, or the peer answered that
// it is not running (a Dataplane shutting down refuses before it reads).
// Only then may the request go to the next node.
func neverReached(ctx context.Context, resp *http.Response, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		return router.OutcomeOf(err) == router.ConnectFailed
	}
	return resp.StatusCode == http.StatusServiceUnavailable && wire.FromFaasplane(resp) &&
		resp.Header.Get(lifecycle.HeaderErrorCode) == string(lifecycle.CodeNotReady)
}

// forwardHTTP sends r (whose body is already read) down targets, in order,
// and relays the first answer, whatever it is; it reports whether it did.
// A target that was never reached is marked suspect and the next one is
// tried; false means none was reached and nothing was written, so the
// caller serves r itself. A request that may have reached a node is never
// sent anywhere else: it could run twice.
func (d *Dataplane) forwardHTTP(w http.ResponseWriter, r *http.Request, targets []peer, body []byte) bool {
	ctx := r.Context()
	for _, p := range targets {
		out := httpx.Outgoing(ctx, r, p.addr, r.URL.EscapedPath(), func() io.ReadCloser { return io.NopCloser(bytes.NewReader(body)) }, int64(len(body)))
		out.Header.Set(lifecycle.HeaderForwardedBy, d.cfg.NodeID)
		resp, err := d.cfg.Cluster.Transport.RoundTrip(out)
		if neverReached(ctx, resp, err) {
			if resp != nil {
				resp.Body.Close()
			}
			d.unreachable(p, err, true)
			continue
		}
		d.fwd.forwarded.Add(1)
		switch {
		case err == nil:
			d.suspects.clear(p.id)
			if cerr := httpx.CopyResponse(w, resp, nil); cerr != nil {
				panic(http.ErrAbortHandler) // the answer broke off after it started
			}
		case ctx.Err() != nil:
			// The client went away; nobody reads an answer.
		default:
			// The node may have run it: running it again elsewhere could
			// run a non-idempotent request twice. The next requests pass
			// the node over.
			d.unreachable(p, err, false)
			wire.WriteError(w, r.Header.Get(lifecycle.HeaderRequestID), 0, lifecycle.CodeInstanceFailure, "node "+p.id+" ("+p.addr+"): "+err.Error())
		}
		return true
	}
	return false
}

// forwardInvoke sends an in-process invocation down targets as
// forwardHTTP does. reached is false when no target was reached (serve
// locally).
func (d *Dataplane) forwardInvoke(ctx context.Context, targets []peer, req *Request, method, rid string) (_ *Response, reached bool, _ error) {
	for _, p := range targets {
		hreq, err := newInvokeRequest(ctx, p.addr, req, method, rid)
		if err != nil {
			return nil, true, err
		}
		h := hreq.Header
		h.Set(lifecycle.HeaderFunctionID, req.FunctionID)
		h.Set(lifecycle.HeaderForwardedBy, d.cfg.NodeID)
		if req.Caller != "" {
			h.Set(lifecycle.HeaderCaller, req.Caller)
		}
		if req.Idempotent {
			h.Set(lifecycle.HeaderIdempotent, "true")
		}
		if req.Priority != loadshed.Default {
			h.Set(lifecycle.HeaderPriority, req.Priority.String())
		}
		resp, err := d.cfg.Cluster.Transport.RoundTrip(hreq)
		if neverReached(ctx, resp, err) {
			if resp != nil {
				resp.Body.Close()
			}
			d.unreachable(p, err, true)
			continue
		}
		d.fwd.forwarded.Add(1)
		from := "node " + p.id
		if err != nil {
			if ctx.Err() == nil {
				d.unreachable(p, err, false)
			}
			return nil, true, transportError(ctx, from, err)
		}
		d.suspects.clear(p.id)
		retryAfter := resp.Header.Get("Retry-After")
		out, err := d.readResponse(ctx, resp, from)
		var pe *lifecycle.Error
		if errors.As(err, &pe) && pe.Code == lifecycle.CodeShed {
			// Keep the owner's back-pressure hint for RetryAfter.
			secs, _ := strconv.Atoi(retryAfter)
			return nil, true, &retryAfterError{err: pe, after: time.Duration(max(secs, 1)) * time.Second}
		}
		return out, true, err
	}
	return nil, false, nil
}
