package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/lifecycle"
)

// HealthChecker is the pull side of health checking: the dataplane asks an
// instance whether it is healthy. A check that reaches an agent serving
// another function (or none) returns an error matching
// lifecycle.CodeInstanceReassigned, which removes the instance at once.
type HealthChecker interface {
	// Check returns nil when inst is healthy. It must honour ctx's
	// deadline.
	Check(ctx context.Context, inst *lifecycle.Instance) error
}

// CheckerFunc adapts a function to [HealthChecker].
type CheckerFunc func(ctx context.Context, inst *lifecycle.Instance) error

// Check calls f(ctx, inst).
func (f CheckerFunc) Check(ctx context.Context, inst *lifecycle.Instance) error { return f(ctx, inst) }

// HealthReport is a pushed health observation of one instance, from a
// checker local to the instance's host.
type HealthReport struct {
	// InstanceID names the instance.
	InstanceID string
	// Healthy is the host's verdict.
	Healthy bool
	// Reassigned reports that the instance's pod serves another function
	// now (or none): the route is stale and is removed.
	Reassigned bool
	// Exited reports that the instance's function process has exited: the
	// route is removed and the instance replaced (Hooks.Replace).
	Exited bool
	// Reason says why, for events and logs.
	Reason string
}

// HealthSource is the push side of health checking: a subscription through
// which a host-local checker reports an instance's health as soon as it
// changes (over pub/sub in a multi-node deployment; contrib/nats carries
// it), so that the dataplane does not depend on the kubelet alone.
type HealthSource interface {
	// Watch delivers reports to report until ctx is done or the source
	// fails, and returns why it stopped. report is called from one
	// goroutine at a time.
	Watch(ctx context.Context, report func(HealthReport)) error
}

// ReportHealth applies a pushed health report at now: an unhealthy report
// takes the instance out of the routes at once (and moves it from Ready to
// Unhealthy), a healthy one lets it back when no pull check holds it out, a
// reassigned one removes it, an exited one removes and replaces it. It returns an error wrapping
// [ErrUnknownInstance] for an instance the router does not hold.
func (r *Router) ReportHealth(now time.Time, rep HealthReport) error {
	r.mu.Lock()
	m := r.instances[rep.InstanceID]
	r.mu.Unlock()
	if m == nil {
		return fmt.Errorf("%w: %q", ErrUnknownInstance, rep.InstanceID)
	}
	reason := "push: " + rep.Reason
	switch {
	case rep.Reassigned:
		r.retire(now, m, CauseReassigned, reason, false)
	case rep.Exited:
		r.retire(now, m, CauseExited, reason, true)
	default:
		r.setHealth(now, m, healthPush, rep.Healthy, CauseHealthPush, reason)
	}
	return nil
}

// retire removes m from the routes, then asks for a replacement (when
// replace is set) and moves the instance to Draining.
func (r *Router) retire(now time.Time, m *member, cause Cause, reason string, replace bool) {
	f := m.fn
	f.mu.Lock()
	if m.removed {
		f.mu.Unlock()
		return
	}
	after := f.retire(now, m, cause, reason, replace)
	f.mu.Unlock()
	after()
}

// setHealth records source's verdict on m. Going out, the route leaves
// first and the instance then moves Ready → Unhealthy; coming back, the
// instance moves Unhealthy → Ready first and the route returns last, so
// that the events carry the health cause rather than the state change.
func (r *Router) setHealth(now time.Time, m *member, source uint8, healthy bool, cause Cause, reason string) {
	m.hmu.Lock()
	defer m.hmu.Unlock()
	f := m.fn
	f.mu.Lock()
	if m.removed || (m.health&source == 0) == healthy {
		f.mu.Unlock()
		return
	}
	was := m.health
	if !healthy {
		m.health |= source
		if !f.update(now, m, cause, reason, time.Time{}) {
			f.publish() // the unhealthy count changed
		}
		f.mu.Unlock()
		if was == 0 {
			_ = m.inst.TransitionFrom(now, lifecycle.Ready, lifecycle.Unhealthy, reason)
		}
		return
	}
	f.mu.Unlock()
	if was == source {
		_ = m.inst.TransitionFrom(now, lifecycle.Unhealthy, lifecycle.Ready, reason)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.removed {
		return
	}
	m.health &^= source
	if !f.update(now, m, cause, reason, time.Time{}) {
		f.publish()
	}
}

// HTTPChecker is the default [HealthChecker]: GET /v1/ping on the control
// listener of the instance's agent (inst.Control), with the pod's token. The instance is healthy when the agent answers 200 with
// a ping response for the instance's function in state "ready"; an answer
// for another function, or the codes instance_reassigned and no_function,
// mean the address was reassigned; anything else, including a timeout, is a
// failure.
type HTTPChecker struct {
	client  *http.Client
	timeout time.Duration
}

// maxPingBody bounds how much of a ping response is read.
const maxPingBody = 64 << 10

// NewHTTPChecker returns a checker that uses client and bounds each check by
// timeout (zero: 1 s, Kubernetes' default probe timeout). A nil client means
// one with its own transport: no proxy (agents are reached directly), one
// kept-alive connection per agent and no bound on their number, since every
// agent is pinged every few seconds; CloseIdleConnections closes them.
func NewHTTPChecker(client *http.Client, timeout time.Duration) *HTTPChecker {
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConns = 0
		t.MaxIdleConnsPerHost = 1
		client = &http.Client{Transport: t}
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	return &HTTPChecker{client: client, timeout: timeout}
}

// Check pings inst's agent.
func (c *HTTPChecker) Check(ctx context.Context, inst *lifecycle.Instance) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	addr := inst.Control.Addr
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+lifecycle.PathPing, nil)
	if err != nil {
		return fmt.Errorf("router: ping %s: %w", addr, err)
	}
	req.Header.Set("Accept", "application/json")
	wire.SetControlToken(req.Header, inst.Control.Token)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("router: ping %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPingBody))
	if err != nil {
		return fmt.Errorf("router: ping %s: reading the response: %w", addr, err)
	}
	if err := checkPingResponse(inst.FunctionID, resp.StatusCode, resp.Header, body); err != nil {
		return fmt.Errorf("router: ping %s: %w", addr, err)
	}
	return nil
}

// CloseIdleConnections closes the checker's idle connections; the
// [HealthMonitor] calls it when it closes.
func (c *HTTPChecker) CloseIdleConnections() { c.client.CloseIdleConnections() }

// checkPingResponse judges an agent's answer to GET /v1/ping for function
// functionID: nil when healthy, an error matching
// lifecycle.CodeInstanceReassigned when the agent serves another function or
// none, another error otherwise. It is what [HTTPChecker] applies to the
// status, headers and (at most 64 KiB of) body it receives, and never
// panics on any input.
func checkPingResponse(functionID string, status int, header http.Header, body []byte) error {
	if status >= 400 {
		perr := lifecycle.ErrorFromResponse(&http.Response{StatusCode: status, Header: header})
		if perr.Code == lifecycle.CodeInstanceReassigned || perr.Code == lifecycle.CodeNoFunction {
			return fmt.Errorf("%w (agent answered %s)", lifecycle.CodeInstanceReassigned, perr.Code)
		}
		return perr
	}
	if status != http.StatusOK {
		return fmt.Errorf("unexpected HTTP status %d", status)
	}
	var pr lifecycle.PingResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return fmt.Errorf("malformed ping response: %w", err)
	}
	if pr.FunctionID != functionID {
		return fmt.Errorf("%w (agent serves function %q)", lifecycle.CodeInstanceReassigned, wire.SanitizeHeaderValue(pr.FunctionID, 256))
	}
	if pr.State != "ready" {
		return fmt.Errorf("%w (agent state %q)", lifecycle.CodeNotReady, wire.SanitizeHeaderValue(pr.State, 64))
	}
	return nil
}
