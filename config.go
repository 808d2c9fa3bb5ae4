package faas

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Config configures a [Dataplane]. Pods and Code are required; every other
// field has a documented default. Each subpackage's own configuration is
// embedded as is: the Dataplane fills in the fields that wire the packages
// together (noted on each) and leaves the rest to the subpackage's defaults.
type Config struct {
	// Pods creates the generic pods the warm pools hold. Required.
	Pods warmpool.PodProvider
	// Code is the origin of the functions' code packages. Deploy opens a
	// function's package through it and verifies its size and digest, so
	// that a bad reference fails at deploy time, not at the first cold
	// start. Required.
	Code code.Store

	// Pool configures the warm pools (package warmpool). Provider is set to
	// Pods. Runtimes defaults to one runtime, "go", with a pool of 1 to 8
	// idle pods. ID defaults to NodeID. RefillDelay defaults to
	// DefaultRefillDelay here (warmpool's own default is 0): the pod that
	// replaces a taken one starts after the cold start that took it, not
	// during it, when both would compete for the node's CPU.
	Pool warmpool.Config
	// ColdStart configures cold starts (package coldstart). Pool and Agent
	// are set by the Dataplane; Observers and OnColdStart are wrapped (the
	// ones set here are called too). Locality, when nil, prefers nodes on
	// which this Dataplane loaded the function's code before (their caches
	// hold it).
	ColdStart coldstart.Config
	// Agent is the client of the pods' agents that cold starts use.
	// Default: a *lifecycle.Client with its defaults.
	Agent coldstart.Agent
	// Router configures routing (package router). Observer and Replace
	// are wrapped (the ones set here are called too); Handoff belongs to
	// the Dataplane and must be nil.
	Router router.Config
	// Health configures the health monitor of the routes. Default: pull
	// checks with GET /v1/ping (readiness 2 s × 3, liveness 45 s × 3).
	Health router.HealthConfig
	// Shedding configures the server-level load shedder (package
	// loadshed). The zero value learns the capacity with an adaptive limit.
	Shedding loadshed.Config
	// DisableShedding turns admission control off: every request is
	// admitted (queue bounds and concurrency limits still apply).
	DisableShedding bool
	// Scaling returns the scaling policy of a function. Default: a
	// concurrency.KPA with the spec's MinInstances, MaxInstances and
	// KeepAlive, Meter's stable window as its panic-exit window, and the
	// KPA's defaults (target utilization 0.7, panic at 2×).
	Scaling func(spec FunctionSpec) (concurrency.ScalingPolicy, error)
	// Meter configures the concurrency averages fed to the scaling policy.
	Meter concurrency.MeterConfig

	// NodeID names this dataplane node in logs, stats and leases, and in
	// Cluster. Default "dataplane".
	NodeID string
	// Cluster lists the dataplane nodes that share the functions, this one
	// included; each function is owned by one of them and requests for it
	// are forwarded there once (see [Dataplane.SetCluster]). Empty means a
	// single node.
	Cluster []ClusterNode
	// ScaleInterval is the period of scaling decisions (Knative's is 2 s).
	// Default 1 s. Requests that find no capacity trigger a cold start at
	// once, without waiting for the next decision.
	ScaleInterval time.Duration
	// SampleInterval is how often the in-flight count of each active
	// function is fed to its meter. Default 100 ms.
	SampleInterval time.Duration
	// ScaleDownDelay is how long an instance must have been Ready before
	// a scale-down may drain it, so that instances started for a burst are
	// not drained and restarted at every burst. Default: the meter's
	// stable window (60 s unless Meter says otherwise).
	ScaleDownDelay time.Duration
	// MaxQueue bounds the requests one function may have waiting for
	// capacity; beyond it a request gets 429. Default 1000.
	MaxQueue int
	// MaxBodyBytes bounds a request body (413 beyond it). The gateway
	// buffers bodies, so that a request that never reached a function can
	// be retried on another instance. Default 6 MiB.
	MaxBodyBytes int64
	// MaxResponseBytes bounds a response body that Invoke buffers; the
	// gateway streams responses and is not bounded. Default 6 MiB.
	MaxResponseBytes int64
	// DrainTimeout bounds how long a draining instance may finish its
	// requests before it is terminated anyway. Default 30 s.
	DrainTimeout time.Duration
	// Transport carries requests to the agents. Default: an http.Transport
	// with keep-alive, 256 idle connections per agent, no proxy.
	Transport http.RoundTripper

	// Observer receives requests, cold starts and route events, for
	// metrics adapters. Default none.
	Observer Observer
	// Logger receives the Dataplane's logs and is passed to the
	// subpackages that have none. Default: discard.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultScaleInterval    = time.Second
	DefaultSampleInterval   = 100 * time.Millisecond
	DefaultMaxQueue         = 1000
	DefaultMaxBodyBytes     = 6 << 20
	DefaultMaxResponseBytes = 6 << 20
	DefaultDrainTimeout     = 30 * time.Second
	DefaultRefillDelay      = 50 * time.Millisecond
)

// ErrInvalidConfig is wrapped by every configuration error of New.
var ErrInvalidConfig = errors.New("faas: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.Pods == nil {
		return c, fmt.Errorf("%w: Pods (a warmpool.PodProvider) is required", ErrInvalidConfig)
	}
	if c.Code == nil {
		return c, fmt.Errorf("%w: Code (a code.Store) is required", ErrInvalidConfig)
	}
	if c.Pool.Provider != nil && c.Pool.Provider != c.Pods {
		return c, fmt.Errorf("%w: set Pods, not Pool.Provider", ErrInvalidConfig)
	}
	if c.NodeID == "" {
		c.NodeID = "dataplane"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Pool.Provider = c.Pods
	if c.Pool.ID == "" {
		c.Pool.ID = c.NodeID
	}
	if c.Pool.Runtimes == nil {
		c.Pool.Runtimes = map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 8}}
	}
	if c.Pool.RefillDelay == 0 {
		c.Pool.RefillDelay = DefaultRefillDelay
	}
	if c.Pool.Logger == nil {
		c.Pool.Logger = c.Logger.With("component", "warmpool")
	}
	if c.ColdStart.Logger == nil {
		c.ColdStart.Logger = c.Logger.With("component", "coldstart")
	}
	if c.Router.Logger == nil {
		c.Router.Logger = c.Logger.With("component", "router")
	}
	if c.Health.Logger == nil {
		c.Health.Logger = c.Logger.With("component", "health")
	}
	if c.Shedding.Logger == nil {
		c.Shedding.Logger = c.Logger.With("component", "loadshed")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"ScaleInterval", &c.ScaleInterval, DefaultScaleInterval},
		{"SampleInterval", &c.SampleInterval, DefaultSampleInterval},
		{"DrainTimeout", &c.DrainTimeout, DefaultDrainTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.ScaleDownDelay < 0 {
		return c, fmt.Errorf("%w: ScaleDownDelay must not be negative", ErrInvalidConfig)
	}
	if c.ScaleDownDelay == 0 {
		c.ScaleDownDelay = cmp.Or(c.Meter.StableWindow, concurrency.DefaultStableWindow)
	}
	if c.MaxQueue < 0 || c.MaxBodyBytes < 0 || c.MaxResponseBytes < 0 {
		return c, fmt.Errorf("%w: MaxQueue, MaxBodyBytes and MaxResponseBytes must not be negative", ErrInvalidConfig)
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Agent == nil {
		a, err := lifecycle.NewClient(lifecycle.ClientConfig{})
		if err != nil {
			return c, err
		}
		c.Agent = a
	}
	if c.Transport == nil {
		c.Transport = newAgentTransport()
	}
	return c, nil
}

// newAgentTransport returns the transport to agents: keep-alive with many
// idle connections per agent (each carries one request at a time, so an
// instance with a concurrency of N needs up to N), short dial timeout, and
// no proxy from the environment (agents are on the pod network).
func newAgentTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
		ResponseHeaderTimeout: 0, // bounded by the request's context
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}
