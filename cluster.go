package faas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/internal/httpx"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/sharding"
)

// ClusterNode is one dataplane node of a multi-node deployment.
type ClusterNode struct {
	// ID names the node; the node's own Config.NodeID.
	ID string
	// Addr is the host:port of the node's gateway, where other nodes
	// forward the requests it owns.
	Addr string
	// Weight is the node's share of functions relative to the others
	// (default 1).
	Weight float64
}

// cluster is an immutable view of the nodes: who owns which function.
type cluster struct {
	table *sharding.Table
	addrs map[string]string
}

// ErrUnknownNode reports a cluster that does not contain this node.
var ErrUnknownNode = errors.New("faas: this node is not in the cluster")

// SetCluster declares the dataplane nodes that share the functions. Every
// function is owned by one node, chosen by weighted rendezvous hashing of
// its ID (package sharding), so that its counters, its queue and its
// instances live in one place; a request that arrives at another node is
// forwarded to the owner once (marked with X-Faas-Forwarded-By, so it is
// never forwarded again). When the membership changes, only the functions
// of the nodes that joined or left move. Deploy every function on every
// node: a node serves a function locally when the owner cannot be reached.
// An empty list turns forwarding off. It is safe to call at any time.
func (d *Dataplane) SetCluster(nodes []ClusterNode) error {
	if len(nodes) == 0 {
		d.cluster.Store(nil)
		return nil
	}
	members := make([]sharding.Node, len(nodes))
	addrs := make(map[string]string, len(nodes))
	self := false
	for i, n := range nodes {
		w := n.Weight
		if w == 0 {
			w = 1
		}
		members[i] = sharding.Node{ID: n.ID, Weight: w}
		if n.ID == d.cfg.NodeID {
			self = true
		} else if n.Addr == "" {
			return fmt.Errorf("%w: node %q has no address", ErrInvalidConfig, n.ID)
		}
		addrs[n.ID] = n.Addr
	}
	if !self {
		return fmt.Errorf("%w: %q", ErrUnknownNode, d.cfg.NodeID)
	}
	table, err := sharding.New(members...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	d.cluster.Store(&cluster{table: table, addrs: addrs})
	return nil
}

// Owner returns the node that owns the function and its gateway address;
// ok is false without a cluster (every function is local).
func (d *Dataplane) Owner(functionID string) (node, addr string, ok bool) {
	c := d.cluster.Load()
	if c == nil {
		return "", "", false
	}
	n, _ := c.table.Pick(functionID)
	return n.ID, c.addrs[n.ID], true
}

// ownerElsewhere returns the gateway address of the function's owner when
// it is another node and the request was not forwarded already.
func (d *Dataplane) ownerElsewhere(functionID string, forwardedBy string) (string, bool) {
	if forwardedBy != "" {
		return "", false
	}
	node, addr, ok := d.Owner(functionID)
	if !ok || node == d.cfg.NodeID {
		return "", false
	}
	return addr, true
}

// forwardStats count requests forwarded to their owner, and those served
// locally because the owner could not be reached.
type forwardStats struct {
	forwarded, fallbacks atomic.Uint64
}

// forwardHTTP sends r (whose body is already read) to the owner's gateway
// and relays its answer, whatever it is, and reports whether it did; false
// means the owner could not be reached and nothing was written, so the
// caller serves r itself. A request that may have reached the owner is
// never served here too: it could run twice.
func (d *Dataplane) forwardHTTP(w http.ResponseWriter, r *http.Request, addr string, body []byte) bool {
	ctx := r.Context()
	out := httpx.Outgoing(ctx, r, addr, r.URL.EscapedPath(), func() io.ReadCloser { return io.NopCloser(bytes.NewReader(body)) }, int64(len(body)))
	out.Header.Set(lifecycle.HeaderForwardedBy, d.cfg.NodeID)
	resp, err := d.cfg.Agents.Transport.RoundTrip(out)
	switch {
	case err == nil:
		d.fwd.forwarded.Add(1)
		if cerr := httpx.CopyResponse(w, resp, nil); cerr != nil {
			panic(http.ErrAbortHandler) // the answer broke off after it started
		}
		return true
	case ctx.Err() == nil && router.OutcomeOf(err) == router.ConnectFailed:
		// The owner never got the request: serving it here is safe.
		d.fwd.fallbacks.Add(1)
		d.log.Warn("owner unreachable; serving locally", "owner", addr, "err", err)
		return false
	case ctx.Err() != nil:
		return true // the client went away; nobody reads an answer
	default:
		// The owner may have run it: running it again here could run a
		// non-idempotent request twice.
		d.fwd.forwarded.Add(1)
		wire.WriteError(w, r.Header.Get(lifecycle.HeaderRequestID), 0, lifecycle.CodeInstanceFailure, "owner node "+addr+": "+err.Error())
		return true
	}
}

// forwardInvoke sends an in-process invocation to the owner's gateway.
// ok is false when the owner could not be reached (serve locally).
func (d *Dataplane) forwardInvoke(ctx context.Context, addr string, req *Request, method, rid string) (*Response, bool, error) {
	hreq, err := newInvokeRequest(ctx, addr, req, method, rid)
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
	resp, err := d.cfg.Agents.Transport.RoundTrip(hreq)
	if err != nil {
		if ctx.Err() == nil && router.OutcomeOf(err) == router.ConnectFailed {
			d.fwd.fallbacks.Add(1) // never reached the owner: serve locally
			return nil, false, nil
		}
		d.fwd.forwarded.Add(1)
		return nil, true, transportError(ctx, "owner "+addr, err)
	}
	d.fwd.forwarded.Add(1)
	retryAfter := resp.Header.Get("Retry-After")
	out, err := d.readResponse(ctx, resp, "owner "+addr)
	var pe *lifecycle.Error
	if errors.As(err, &pe) && pe.Code == lifecycle.CodeShed {
		// Keep the owner's back-pressure hint for RetryAfter.
		secs, _ := strconv.Atoi(retryAfter)
		return nil, true, &retryAfterError{err: pe, after: time.Duration(max(secs, 1)) * time.Second}
	}
	return out, true, err
}
