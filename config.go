package faas

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Config configures a [Dataplane]. Pods and Code are required; every other
// field has a documented default. The first fields are what most embedders
// set; the sections after them tune one subsystem each, with that
// subsystem's own configuration type. No field is wired by the Dataplane
// behind the caller's back: a field left zero takes its documented default,
// and one that is set is used as set.
type Config struct {
	// Pods creates the generic pods the warm pools hold. Required.
	Pods warmpool.PodProvider
	// Code is the origin of the functions' code packages. Deploy opens a
	// function's package through it and verifies its size and digest, so
	// that a bad reference fails at deploy time, not at the first cold
	// start. Required.
	Code code.Store

	// NodeID names this dataplane node in logs, stats and leases, and in
	// Cluster. Default "dataplane".
	NodeID string
	// Cluster makes this node one of several that share the functions
	// (and, with a Membership, the pods): see [ClusterConfig]. The zero
	// value is a single node.
	Cluster ClusterConfig
	// Limits bound what requests may take.
	Limits Limits
	// DrainTimeout bounds how long a draining instance may finish its
	// requests before it is terminated anyway, and each pod deletion.
	// Default 30 s.
	DrainTimeout time.Duration
	// Observer receives requests, cold starts, instance transitions and
	// route events, for metrics adapters. Default none.
	Observer Observer
	// Logger receives the Dataplane's logs, and is the default logger of
	// the sections below. Default: discard.
	Logger *slog.Logger
	// Clock is the time of the Dataplane's control loop (sampling,
	// scaling, keep-alive, backoff) and the default clock of the sections
	// below; tests pass a faastest.Clock to drive it. Deadlines of
	// requests are contexts, on real time. Default: the system clock.
	Clock clock.Clock

	// Pool tunes the warm pools (package warmpool). Its Leases,
	// Membership, Addr and Weight come from Cluster, and must be left
	// zero here. Runtimes defaults to one runtime, "go", with a pool of 1
	// to 8 idle pods; ID to NodeID (it must equal NodeID with a
	// membership);
	// RefillDelay to DefaultRefillDelay (warmpool's own default is 0), so
	// that the pod that replaces a taken one starts after the cold start
	// that took it rather than during it, when both would compete for the
	// node's CPU; Clock and Logger to the Dataplane's.
	Pool warmpool.Config
	// ColdStart tunes cold starts (package coldstart). Locality defaults
	// to preferring nodes on which this Dataplane loaded the function's
	// code before (their caches hold it); Clock and Logger to the
	// Dataplane's. A function's init hook is bounded by its own
	// FunctionSpec.InitTimeout.
	ColdStart coldstart.Config
	// Routing tunes the route table (package router): the picking policy
	// (power of two choices by default), breakers, the retry budget.
	Routing router.Config
	// Health configures the health checks of the instances: pull checks
	// with GET /v1/ping on each agent's control listener by default
	// (readiness 2 s × 3, liveness 45 s × 3), an optional push source, and
	// the panic threshold that keeps a partitioned checker from draining
	// everything. Clock and Logger default to the Dataplane's.
	Health router.HealthConfig
	// Shedding configures the server-level load shedder (package
	// loadshed). The zero value learns the capacity with an adaptive
	// limit.
	Shedding loadshed.Config
	// DisableShedding turns admission control off: every request is
	// admitted (queue bounds and concurrency limits still apply).
	DisableShedding bool
	// Scaler tunes the control loop that sizes each function.
	Scaler ScalerConfig
	// Agents configures how the Dataplane reaches the pods' agents.
	Agents AgentsConfig
	// Usage sends a usage record of every finished invocation (caller,
	// billed duration, memory size, GB-seconds, cold or warm, outcome) to
	// a sink, through a bounded buffer drained by one goroutine. Default:
	// no sink, no records (see [UsageConfig] for the buffer's defaults).
	Usage UsageConfig
}

// Limits bound what requests may take. Zero fields take the defaults.
type Limits struct {
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
}

// ScalerConfig tunes the control loop that samples each function's demand,
// asks its scaling policy how many instances it should have, and starts or
// drains instances accordingly.
type ScalerConfig struct {
	// Policy returns the scaling policy of a function. Default: a
	// concurrency.KPA with the spec's MinInstances, MaxInstances and
	// KeepAlive, Meter's stable window as its panic-exit window, and the
	// KPA's defaults (target utilization 0.7, panic at 2×).
	Policy func(spec FunctionSpec) (concurrency.ScalingPolicy, error)
	// Meter configures the concurrency averages fed to the policy.
	Meter concurrency.MeterConfig
	// Interval is the period of scaling decisions (Knative's is 2 s).
	// Default 1 s. Requests that find no capacity trigger a cold start at
	// once, without waiting for the next decision.
	Interval time.Duration
	// SampleInterval is how often the demand of each active function is
	// fed to its meter. Default 100 ms.
	SampleInterval time.Duration
	// ScaleDownDelay is how long an instance must have been Ready before
	// a scale-down may drain it, so that instances started for a burst are
	// not drained and restarted at every burst. Default: the meter's
	// stable window (60 s unless Meter says otherwise).
	ScaleDownDelay time.Duration
}

// AgentsConfig configures how the Dataplane reaches the pods' agents.
type AgentsConfig struct {
	// Transport carries invocations to the agents' invocation listeners
	// and forwarded requests to other nodes. Default: an http.Transport
	// with keep-alive, 256 idle connections per agent, no proxy.
	Transport http.RoundTripper
	// Client makes the control calls of cold starts (load, initialize) and
	// the instances' watches. Default: a *lifecycle.Client whose load
	// timeout is ColdStart.LoadTimeout.
	Client coldstart.AgentClient
}

// Defaults of Config.
const (
	DefaultMaxQueue         = 1000
	DefaultMaxBodyBytes     = 6 << 20
	DefaultMaxResponseBytes = 6 << 20
	DefaultDrainTimeout     = 30 * time.Second
	DefaultRefillDelay      = 50 * time.Millisecond
	DefaultScaleInterval    = time.Second
	DefaultSampleInterval   = 100 * time.Millisecond
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
	c.NodeID = cmp.Or(c.NodeID, "dataplane")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	logger := func(l **slog.Logger, component string) {
		if *l == nil {
			*l = c.Logger.With("component", component)
		}
	}
	clk := func(k *clock.Clock) {
		if *k == nil {
			*k = c.Clock
		}
	}

	if err := c.Cluster.validate(c.NodeID); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.Pool.Leases != nil || c.Pool.Membership != nil || c.Pool.Addr != "" || c.Pool.Weight != 0 {
		return c, fmt.Errorf("%w: Pool.Leases, Membership, Addr and Weight come from Cluster; set them there", ErrInvalidConfig)
	}
	c.Pool.ID = cmp.Or(c.Pool.ID, c.NodeID)
	if c.Cluster.Membership != nil {
		if c.Pool.ID != c.NodeID {
			return c, fmt.Errorf("%w: with a membership, Pool.ID must be NodeID (the node is one member)", ErrInvalidConfig)
		}
		c.Pool.Leases, c.Pool.Membership = c.Cluster.Leases, c.Cluster.Membership
		c.Pool.Addr, c.Pool.Weight = c.Cluster.Advertise, c.Cluster.Weight
	}
	c.Cluster.SuspectTimeout = cmp.Or(c.Cluster.SuspectTimeout, DefaultSuspectTimeout)
	if c.Cluster.Transport == nil {
		c.Cluster.Transport = newAgentTransport()
	}
	if c.Pool.Runtimes == nil {
		c.Pool.Runtimes = map[string]warmpool.RuntimeConfig{"go": {Min: 1, Max: 8}}
	}
	c.Pool.RefillDelay = cmp.Or(c.Pool.RefillDelay, DefaultRefillDelay)
	logger(&c.Pool.Logger, "warmpool")
	clk(&c.Pool.Clock)
	logger(&c.ColdStart.Logger, "coldstart")
	clk(&c.ColdStart.Clock)
	logger(&c.Routing.Logger, "router")
	logger(&c.Health.Logger, "health")
	clk(&c.Health.Clock)
	logger(&c.Shedding.Logger, "loadshed")

	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DrainTimeout", &c.DrainTimeout, DefaultDrainTimeout},
		{"Scaler.Interval", &c.Scaler.Interval, DefaultScaleInterval},
		{"Scaler.SampleInterval", &c.Scaler.SampleInterval, DefaultSampleInterval},
		{"Scaler.ScaleDownDelay", &c.Scaler.ScaleDownDelay, cmp.Or(c.Scaler.Meter.StableWindow, concurrency.DefaultStableWindow)},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%w: %s must not be negative", ErrInvalidConfig, d.name)
		}
		*d.v = cmp.Or(*d.v, d.def)
	}
	l := &c.Limits
	if l.MaxQueue < 0 || l.MaxBodyBytes < 0 || l.MaxResponseBytes < 0 {
		return c, fmt.Errorf("%w: Limits must not be negative", ErrInvalidConfig)
	}
	l.MaxQueue = cmp.Or(l.MaxQueue, DefaultMaxQueue)
	l.MaxBodyBytes = cmp.Or(l.MaxBodyBytes, DefaultMaxBodyBytes)
	l.MaxResponseBytes = cmp.Or(l.MaxResponseBytes, DefaultMaxResponseBytes)
	if _, err := concurrency.NewMeter(c.Scaler.Meter); err != nil {
		return c, fmt.Errorf("%w: Scaler.Meter: %w", ErrInvalidConfig, err)
	}

	if c.Agents.Client == nil {
		// One owner for the load timeout: the client waits as long as the
		// cold start allows.
		a, err := lifecycle.NewClient(lifecycle.ClientConfig{LoadTimeout: cmp.Or(c.ColdStart.LoadTimeout, coldstart.DefaultLoadTimeout)})
		if err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		c.Agents.Client = a
	}
	if c.Agents.Transport == nil {
		c.Agents.Transport = newAgentTransport()
	}
	if err := c.Usage.init(); err != nil {
		return c, fmt.Errorf("%w: Usage: %w", ErrInvalidConfig, err)
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
