package warmpool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// Prober checks that an idle pod is alive and still generic. The Manager
// probes its idle pods periodically and replaces those that fail, and
// probes a pod it adopts before it joins the pool. Implementations must be
// safe for concurrent use.
type Prober interface {
	// Probe returns nil when the pod's agent answers as a generic pod
	// does, an error wrapping ErrNotIdle when it answers with a function
	// loaded, and any other error when it does not answer properly.
	Probe(ctx context.Context, pod Pod) error
}

// ProberFunc adapts a function to [Prober].
type ProberFunc func(ctx context.Context, pod Pod) error

// Probe calls f(ctx, pod).
func (f ProberFunc) Probe(ctx context.Context, pod Pod) error { return f(ctx, pod) }

// HTTPProber probes a pod's agent with GET /v1/ping on its control
// listener, presenting the pod's control token. A generic pod answers 404
// no_function; 200 means a function is loaded (ErrNotIdle); anything else,
// or no answer, is a failure.
type HTTPProber struct {
	// Client sends the probes. Default: a client with its own transport
	// that keeps one idle connection per agent, so that periodic probes
	// reuse connections.
	Client *http.Client
	// Timeout bounds one probe. Default 2 seconds.
	Timeout time.Duration

	once sync.Once
	hc   *http.Client
	lc   *lifecycle.Client
}

func (p *HTTPProber) client() *lifecycle.Client {
	p.once.Do(func() {
		p.hc = p.Client
		if p.hc == nil {
			p.hc = &http.Client{Transport: &http.Transport{
				Proxy:               nil, // agents are on the pod network or loopback
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     time.Minute,
			}}
		}
		timeout := p.Timeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		// The configuration is valid by construction: one positive timeout.
		p.lc, _ = lifecycle.NewClient(lifecycle.ClientConfig{HTTPClient: p.hc, PingTimeout: timeout})
	})
	return p.lc
}

// CloseIdleConnections closes the idle connections of the prober's client.
// A Manager calls it when it closes.
func (p *HTTPProber) CloseIdleConnections() {
	p.client()
	p.hc.CloseIdleConnections()
}

// Probe pings pod.Control.
func (p *HTTPProber) Probe(ctx context.Context, pod Pod) error {
	_, err := p.client().Ping(ctx, pod.Control)
	switch {
	case errors.Is(err, lifecycle.CodeNoFunction):
		return nil
	case err == nil:
		return fmt.Errorf("warmpool: probe %s: %w (the agent has a function loaded)", pod.ID, ErrNotIdle)
	default:
		return fmt.Errorf("warmpool: probe %s: %w", pod.ID, err)
	}
}

// NodeHealth tells whether a node may receive cold starts. The Manager never
// hands out a pod on a node it reports unhealthy. NodeHealthy is called on
// the Take path for every candidate pod, so it must be fast and must not
// block (read a snapshot kept up to date elsewhere).
type NodeHealth interface {
	NodeHealthy(node string) bool
}

// NodeHealthFunc adapts a function to [NodeHealth].
type NodeHealthFunc func(node string) bool

// NodeHealthy calls f(node).
func (f NodeHealthFunc) NodeHealthy(node string) bool { return f(node) }

type allHealthy struct{}

func (allHealthy) NodeHealthy(string) bool { return true }
