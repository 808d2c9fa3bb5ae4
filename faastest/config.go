package faastest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// ErrConfig is matched (errors.Is) by every configuration error of [Run].
var ErrConfig = errors.New("faastest: invalid simulation config")

// Defaults of [FunctionSpec]; the concurrency, instance, keep-alive and
// queue defaults are those of faas.FunctionSpec and concurrency.Queue, so
// that a simulated function behaves like a deployed one.
const (
	DefaultConcurrency  = 10
	DefaultMaxInstances = 100
	DefaultKeepAlive    = concurrency.DefaultKeepAlive
	DefaultMaxQueue     = concurrency.DefaultMaxWaiters
	DefaultQueueTimeout = concurrency.DefaultMaxWait
	// DefaultCodeSize is a mid-sized function package (a Go binary, or a
	// Python package with a few dependencies).
	DefaultCodeSize = 8 << 20
	// DefaultScaleInterval is how often the scaling policy decides,
	// Knative's autoscaler tick.
	DefaultScaleInterval = 2 * time.Second
	// DefaultPoolInterval is how often pool targets are recomputed, the
	// warm-pool manager's default renew interval (its 15 s lease TTL / 3).
	DefaultPoolInterval = 5 * time.Second
	// DefaultMaxParallelCreates is the warm-pool manager's default bound
	// on pod creations in flight.
	DefaultMaxParallelCreates = 4
	// DefaultMaxColdStarts is the cold-start Starter's default bound on
	// cold starts in flight.
	DefaultMaxColdStarts = 64
	// DefaultSampleEvery is the timeline's initial resolution; it doubles
	// whenever the timeline would exceed MaxTimelinePoints.
	DefaultSampleEvery = time.Second
	// DefaultMemoryMB is an instance's memory when a spec sets none
	// (AWS Lambda's default size), for the GB-seconds of the report.
	DefaultMemoryMB = 128
	// DefaultDetect is how long a dead instance stays in the routes
	// before the health monitor takes it out: three failed readiness
	// checks 2 s apart (router.HealthConfig's defaults).
	DefaultDetect = 6 * time.Second
	// DefaultNodeDowntime is how long a lost node stays down before a
	// node with an empty code cache takes its place.
	DefaultNodeDowntime = 5 * time.Minute
	// MaxTimelinePoints bounds the timeline's length.
	MaxTimelinePoints = 4096
)

// The default distributions, described on the fields they fill in.
func defaultService() Dist   { return Exp(100 * time.Millisecond) }
func defaultLoad() Dist      { return LogNormal(100*time.Millisecond, 0.3) }
func defaultInit() Dist      { return LogNormal(50*time.Millisecond, 0.5) }
func defaultPodCreate() Dist { return LogNormal(time.Second, 0.3) }

// FunctionSpec describes one simulated function. Zero fields take the
// documented defaults.
type FunctionSpec struct {
	// ID names the function, as the workload's arrivals do.
	ID string
	// Runtime names the warm pool the function's instances come from.
	// Default: the first runtime of Config.Runtimes in name order.
	Runtime string
	// Service is the execution time of one invocation on an instance.
	// Default: exponential with a mean of 100 ms, a short HTTP function.
	Service Dist
	// Concurrency is the per-instance limit of requests in flight, the
	// instance's concurrency.Slots that the router policy compares.
	// Default DefaultConcurrency.
	Concurrency int
	// Parallelism is how many of those requests the instance executes at
	// once; the others wait inside the instance, first come first served
	// (a single-threaded runtime behind an agent that admits more).
	// Default Concurrency; at most Concurrency.
	Parallelism int
	// MinInstances, MaxInstances and KeepAlive configure the default
	// scaling policy ([KPAFor]); a custom Config.Scaler may read them too.
	// MaxInstances also caps what any policy asks for, as the dataplane
	// does. Defaults 0, DefaultMaxInstances, DefaultKeepAlive; a negative
	// KeepAlive means none (the KPA still keeps an instance while its
	// 60 s stable average of concurrency is above zero).
	MinInstances, MaxInstances int
	KeepAlive                  time.Duration
	// MaxQueue bounds the requests waiting for a slot; one more is
	// refused at once. Default DefaultMaxQueue.
	MaxQueue int
	// QueueTimeout bounds a request's wait for a slot (cold start
	// included); it then fails. Default DefaultQueueTimeout.
	QueueTimeout time.Duration
	// CodeSize is the code package's size in bytes, which the cache tiers
	// count and the fetch latency grows with. Default DefaultCodeSize.
	CodeSize int64
	// Load and Init are the cold start's steps after the code fetch:
	// starting the function process (unpack and exec) and its init hook.
	// Defaults: log-normal with medians of 100 ms (sigma 0.3) and 50 ms
	// (sigma 0.5).
	Load, Init Dist
	// MaxConcurrency is the function-wide limit of requests in flight or
	// waiting, over all its instances (faas.FunctionSpec.MaxConcurrency,
	// a real concurrency.FunctionLimit): one more is refused at once
	// (Stats.Limited). Zero means none.
	MaxConcurrency int
	// Idempotent lets a request that reached a failed instance be retried
	// on another one (router.Retryable); requests that never reached the
	// function are retried whatever it says.
	Idempotent bool
	// MemoryMB is the memory of one instance, which turns instance-seconds
	// into GB-seconds. Default DefaultMemoryMB.
	MemoryMB float64
}

// RuntimeSpec configures the warm pool of one runtime.
type RuntimeSpec struct {
	// Min and Max bound the pool's target (warmpool.RuntimeConfig). When
	// both are zero they are 1 and 50.
	Min, Max int
	// Create is the latency of creating a pod (scheduling, the image
	// already on the node, the agent's start). Default: log-normal with a
	// median of 1 s (sigma 0.3).
	Create Dist
}

// Tier is one level of the code cache hierarchy: a fetch from it costs a
// sample of Latency plus the package's size divided by BytesPerSecond.
// Zero fields take the tier's default (see CodeConfig); an infinite
// BytesPerSecond makes the size cost nothing.
type Tier struct {
	Latency        Dist
	BytesPerSecond float64
}

// CodeConfig configures the nodes and the code cache tiers: a disk cache
// with a byte budget and LRU eviction on every node, a shared cache, and
// the origin.
type CodeConfig struct {
	// Nodes is the number of nodes pods are placed on, round robin.
	// Default 8.
	Nodes int
	// NodeCacheBytes is each node's disk cache budget. Default 2 GiB.
	NodeCacheBytes int64
	// SharedCacheBytes is the shared cache's budget. Default 64 GiB;
	// negative means no shared tier.
	SharedCacheBytes int64
	// Local, Shared and Origin are the tiers' costs. Defaults: local disk
	// 2 ms + 1 GB/s; shared cache 10 ms + 200 MB/s; origin (object store)
	// 50 ms + 50 MB/s.
	Local, Shared, Origin Tier
}

// Speeds makes the nodes and instances unequally fast, so that
// load-balancing policies are compared in the simulator itself. An
// invocation's service time, drawn from its function's distribution, is
// divided by the speed of the node and of the instance that execute it.
type Speeds struct {
	// Nodes are the worker nodes' speed factors, node i taking
	// Nodes[i % len(Nodes)]; 0.5 is a node half as fast (noisy
	// neighbours, an older machine type). Empty: all 1.
	Nodes []float64
	// InstanceSigma spreads the instances' own speeds: each instance
	// draws a factor from a log-normal distribution of median 1 and this
	// shape when it starts (CPU contention it meets on its node). Zero:
	// all 1.
	InstanceSigma float64
}

// Failures injects crashes. Rates are per hour of life: an instance
// crashes after an exponential time of mean 1/InstanceCrashRate hours, a
// worker node is lost after one of mean 1/NodeLossRate hours. A crash
// fails the requests the instance holds: those executing may have reached
// the function (router.InstanceFailed: retried on another instance only
// when the function is Idempotent), those waiting inside the instance did
// not (router.Exited: retried); requests the router sends to the dead
// instance afterwards fail fast and are retried, and the router takes the
// instance out and asks for a replacement, as the dataplane's Replace
// hook does. Every retry goes through router.Retry, so its rules hold:
// once per request, within the retry budget, never to the failed
// instance; a request that never reached a function and finds no other
// instance waits for capacity as a new one would. A lost node takes its
// instances, its idle pods, its cold starts in progress and its code
// cache with it; requests to its instances fail to connect
// (router.ConnectFailed) until the health monitor, Detect later, takes
// them out. The node comes back empty after Downtime.
type Failures struct {
	// InstanceCrashRate is the crashes per instance-hour. Zero: none.
	InstanceCrashRate float64
	// NodeLossRate is the losses per node-hour. Zero: none.
	NodeLossRate float64
	// Detect is how long a dead instance stays in the routes before the
	// health monitor takes it out. Default DefaultDetect.
	Detect time.Duration
	// Downtime is how long a lost node stays down. Default
	// DefaultNodeDowntime.
	Downtime time.Duration
}

// Config configures a simulation run: the functions and pools, and the
// policy objects every decision is made by. Policies are built afresh for
// each run from the constructors given, so a Config can be run many
// times, and two runs with the same Config, workload and Seed produce the
// same report, bit for bit.
type Config struct {
	// Name labels the run in reports and comparisons.
	Name string
	// Seed seeds every random choice of the run: service times, cold
	// start steps, pod creation, the router's picks.
	Seed uint64
	// Functions describes functions by ID. A function of the workload not
	// listed here is simulated with Default (and its ID).
	Functions []FunctionSpec
	// Default is the spec of unlisted functions; its ID is ignored.
	Default FunctionSpec
	// Runtimes are the warm pools by runtime name. Default: one runtime,
	// "default", with a default RuntimeSpec.
	Runtimes map[string]RuntimeSpec
	// Code configures the nodes and the code cache tiers.
	Code CodeConfig

	// Policy picks the instance of every request, through a real
	// router.Router seeded from Seed. Default router.P2C().
	Policy router.Policy
	// Scaler returns the scaling policy of one function; it decides how
	// many instances the function has, hence keep-alive and scale to
	// zero. Default [KPAFor]; [KeepAliveFor] (an exact fixed keep-alive)
	// and [HybridFor] (the hybrid histogram policy) are the other
	// policies that ship. A policy that implements concurrency.Quiet lets
	// idle functions sleep between the decisions that matter.
	Scaler func(fn FunctionSpec) (concurrency.ScalingPolicy, error)
	// Sizing returns the sizing policy of one runtime's warm pool.
	// Default [EWMASizingFor].
	Sizing func(runtime string, rc warmpool.RuntimeConfig) (warmpool.SizingPolicy, error)
	// Shedder returns the admission controller every request passes.
	// Default loadshed.New(loadshed.Config{}), the package's defaults:
	// an adaptive limit, whose latency samples include the time requests
	// wait for cold starts, so a storm of cold starts (hundreds of
	// functions starting at once) makes it shed until the instances are
	// up. Give it a Capacity, or set NoShedding, to study other things.
	Shedder func() (*loadshed.Shedder, error)
	// NoShedding admits every request without a Shedder (for checking
	// the simulator against queueing theory).
	NoShedding bool
	// Meter configures each function's concurrency.Meter, which feeds the
	// scaling policy. Default: the package defaults (KPA's windows).
	Meter concurrency.MeterConfig

	// ScaleInterval is the period of the scaling decisions. Between them,
	// a request that finds no free slot makes sure that ceil(waiting /
	// Concurrency) cold starts are under way, within MaxInstances, as the
	// dataplane's slow path does. Default DefaultScaleInterval.
	ScaleInterval time.Duration
	// ScaleDownDelay is how long an instance must have been Ready before a
	// scale-down may drain it, as the dataplane's Config.ScaleDownDelay
	// (both use concurrency.PlanRound). Default 0: any Ready instance;
	// set it to the meter's stable window to model the dataplane's
	// default.
	ScaleDownDelay time.Duration
	// DormantInterval is the period of the scaling decisions of a
	// dormant function: one with no instance, no cold start and no
	// request. Default ScaleInterval, so that a policy that pre-warms is
	// asked as often as any other; a replay of many thousands of functions
	// may raise it (it is rounded to a multiple of ScaleInterval) to save
	// time, at the cost of that precision.
	DormantInterval time.Duration
	// PoolInterval is the period at which pool targets are recomputed.
	// Default DefaultPoolInterval.
	PoolInterval time.Duration
	// MaxParallelCreates bounds pod creations in flight, all pools
	// together. Default DefaultMaxParallelCreates.
	MaxParallelCreates int
	// MaxColdStarts bounds cold starts in flight; more wait in order.
	// Default DefaultMaxColdStarts.
	MaxColdStarts int

	// Dataplanes is the number of dataplane nodes. Each function is owned
	// by one, chosen by the real sharding.Table (weighted rendezvous
	// hashing, as faas.Dataplane.SetCluster); every invocation reaches a
	// dataplane chosen uniformly at random, which forwards it to the
	// owner once, as the dataplane's gateway does. Each dataplane has its
	// own shedder (Shedder is called once per dataplane), cold-start bound
	// (MaxColdStarts) and warm pools with their bound on creations
	// (MaxParallelCreates), as each faas.Dataplane has its own Starter
	// and warm-pool manager. Default 1.
	Dataplanes int
	// Forward is the latency of forwarding a request to its owner.
	// Default: a constant 0.5 ms (one hop within a data centre).
	Forward Dist
	// Hop is the round trip between a dataplane and the agent of the
	// instance it proxies to, added to every invocation's time on the
	// instance (it holds the slot meanwhile). Default none.
	Hop Dist
	// Speeds makes nodes and instances unequally fast.
	Speeds Speeds
	// Failures injects instance crashes and node losses.
	Failures Failures

	// WarmUp excludes the invocations that arrive before it, and the
	// instance-seconds spent before it, from the report.
	WarmUp time.Duration
	// Until keeps the run going, with its periodic decisions, until this
	// virtual time even after the last request, so that what instances
	// cost after the traffic is counted. Zero ends the run when the last
	// request and cold start have finished.
	Until time.Duration
	// SampleEvery is the timeline's initial resolution. Default
	// DefaultSampleEvery.
	SampleEvery time.Duration
}

// KPAFor is the default Config.Scaler: the concurrency package's KPA with
// the function's MinInstances, MaxInstances and KeepAlive.
func KPAFor(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
	return concurrency.NewKPA(concurrency.KPAConfig{
		MinInstances: fn.MinInstances,
		MaxInstances: fn.MaxInstances,
		KeepAlive:    fn.KeepAlive,
	})
}

// KeepAliveFor is a Config.Scaler: the fixed keep-alive policy of the
// concurrency package (concurrency.KeepAlive) with the function's
// KeepAlive, MinInstances and MaxInstances. Unlike the KPA's, its
// keep-alive is exact: 6 s means 6 s.
func KeepAliveFor(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
	return concurrency.NewKeepAlive(concurrency.KeepAliveConfig{
		KeepAlive: fn.KeepAlive,
		KPA:       concurrency.KPAConfig{MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances},
	})
}

// HybridFor is a Config.Scaler: the hybrid histogram keep-alive and
// pre-warm policy of the concurrency package (concurrency.Hybrid, after
// Shahrad et al., ATC 2020) with its defaults and the function's
// MinInstances and MaxInstances.
func HybridFor(fn FunctionSpec) (concurrency.ScalingPolicy, error) {
	return concurrency.NewHybrid(concurrency.HybridConfig{
		KPA: concurrency.KPAConfig{MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances},
	})
}

// EWMASizingFor is the default Config.Sizing: the warmpool package's
// EWMASizing within the runtime's bounds, as warmpool.Manager's default.
func EWMASizingFor(_ string, rc warmpool.RuntimeConfig) (warmpool.SizingPolicy, error) {
	return warmpool.NewEWMASizing(warmpool.EWMASizingConfig{Min: rc.Min, Max: rc.Max})
}

func (c Config) withDefaults() Config {
	if c.Policy == nil {
		c.Policy = router.P2C()
	}
	if c.Scaler == nil {
		c.Scaler = KPAFor
	}
	if c.Sizing == nil {
		c.Sizing = EWMASizingFor
	}
	if c.Shedder == nil {
		c.Shedder = func() (*loadshed.Shedder, error) { return loadshed.New(loadshed.Config{}) }
	}
	if len(c.Runtimes) == 0 {
		c.Runtimes = map[string]RuntimeSpec{"default": {}}
	} else {
		c.Runtimes = maps.Clone(c.Runtimes)
	}
	for name, rs := range c.Runtimes {
		if rs.Min == 0 && rs.Max == 0 {
			rs.Min, rs.Max = 1, 50
		}
		if rs.Create == nil {
			rs.Create = defaultPodCreate()
		}
		c.Runtimes[name] = rs
	}
	c.Code.Nodes = cmp.Or(c.Code.Nodes, 8)
	c.Code.NodeCacheBytes = cmp.Or(c.Code.NodeCacheBytes, 2<<30)
	c.Code.SharedCacheBytes = cmp.Or(c.Code.SharedCacheBytes, 64<<30)
	tier := func(t *Tier, lat time.Duration, bps float64) {
		if t.Latency == nil {
			t.Latency = Const(lat)
		}
		if t.BytesPerSecond == 0 {
			t.BytesPerSecond = bps
		}
	}
	tier(&c.Code.Local, 2*time.Millisecond, 1e9)
	tier(&c.Code.Shared, 10*time.Millisecond, 200e6)
	tier(&c.Code.Origin, 50*time.Millisecond, 50e6)
	c.ScaleInterval = cmp.Or(c.ScaleInterval, DefaultScaleInterval)
	c.DormantInterval = cmp.Or(c.DormantInterval, c.ScaleInterval)
	c.PoolInterval = cmp.Or(c.PoolInterval, DefaultPoolInterval)
	c.MaxParallelCreates = cmp.Or(c.MaxParallelCreates, DefaultMaxParallelCreates)
	c.MaxColdStarts = cmp.Or(c.MaxColdStarts, DefaultMaxColdStarts)
	c.SampleEvery = cmp.Or(c.SampleEvery, DefaultSampleEvery)
	c.Dataplanes = cmp.Or(c.Dataplanes, 1)
	if c.Forward == nil {
		c.Forward = Const(500 * time.Microsecond)
	}
	c.Failures.Detect = cmp.Or(c.Failures.Detect, DefaultDetect)
	c.Failures.Downtime = cmp.Or(c.Failures.Downtime, DefaultNodeDowntime)
	return c
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.ScaleInterval < 0 || c.DormantInterval < 0 || c.PoolInterval < 0 || c.SampleEvery < 0:
		return bad("negative interval")
	case c.MaxParallelCreates < 0 || c.MaxColdStarts < 0:
		return bad("negative MaxParallelCreates or MaxColdStarts")
	case c.Code.Nodes < 0 || c.Code.NodeCacheBytes < 0:
		return bad("negative Code.Nodes or Code.NodeCacheBytes")
	case c.Code.Local.BytesPerSecond < 0 || c.Code.Shared.BytesPerSecond < 0 || c.Code.Origin.BytesPerSecond < 0:
		return bad("negative tier bandwidth")
	case c.WarmUp < 0 || c.Until < 0:
		return bad("negative WarmUp or Until")
	case c.Dataplanes < 0 || c.Dataplanes > 1000:
		return bad("Dataplanes %d not in [1, 1000]", c.Dataplanes)
	case !(c.Failures.InstanceCrashRate >= 0) || !(c.Failures.NodeLossRate >= 0) ||
		math.IsInf(c.Failures.InstanceCrashRate, 0) || math.IsInf(c.Failures.NodeLossRate, 0):
		return bad("failure rates must be finite and >= 0")
	case c.Failures.Detect < 0 || c.Failures.Downtime < 0:
		return bad("negative Failures.Detect or Failures.Downtime")
	case !(c.Speeds.InstanceSigma >= 0) || math.IsInf(c.Speeds.InstanceSigma, 0):
		return bad("Speeds.InstanceSigma must be finite and >= 0")
	}
	for i, sp := range c.Speeds.Nodes {
		if !(sp > 0) || math.IsInf(sp, 0) {
			return bad("Speeds.Nodes[%d] = %v: want a positive finite factor", i, sp)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Runtimes)) {
		rs := c.Runtimes[name]
		if name == "" || rs.Min < 0 || rs.Max <= 0 || rs.Min > rs.Max {
			return bad("runtime %q: want a name and 0 <= Min <= Max, Max > 0 (got %d, %d)", name, rs.Min, rs.Max)
		}
	}
	seen := make(map[string]bool, len(c.Functions))
	for _, fn := range c.Functions {
		if fn.ID == "" || seen[fn.ID] {
			return bad("function IDs must be non-empty and unique (%q)", fn.ID)
		}
		seen[fn.ID] = true
	}
	return nil
}

// resolve fills in a function spec's defaults; runtime is the config's
// default runtime.
func (fn FunctionSpec) resolve(runtime string) FunctionSpec {
	fn.Runtime = cmp.Or(fn.Runtime, runtime)
	if fn.Service == nil {
		fn.Service = defaultService()
	}
	fn.Concurrency = cmp.Or(fn.Concurrency, DefaultConcurrency)
	fn.Parallelism = cmp.Or(fn.Parallelism, fn.Concurrency)
	fn.MaxInstances = cmp.Or(fn.MaxInstances, DefaultMaxInstances)
	fn.KeepAlive = cmp.Or(fn.KeepAlive, DefaultKeepAlive)
	fn.MaxQueue = cmp.Or(fn.MaxQueue, DefaultMaxQueue)
	fn.QueueTimeout = cmp.Or(fn.QueueTimeout, DefaultQueueTimeout)
	fn.CodeSize = cmp.Or(fn.CodeSize, DefaultCodeSize)
	if fn.Load == nil {
		fn.Load = defaultLoad()
	}
	if fn.Init == nil {
		fn.Init = defaultInit()
	}
	fn.MemoryMB = cmp.Or(fn.MemoryMB, DefaultMemoryMB)
	return fn
}

func (fn *FunctionSpec) validate(runtimes map[string]RuntimeSpec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: function %q: "+format, append([]any{ErrConfig, fn.ID}, args...)...)
	}
	switch {
	case fn.Concurrency < 1 || fn.Concurrency > concurrency.MaxLimit:
		return bad("Concurrency %d out of range", fn.Concurrency)
	case fn.Parallelism < 1 || fn.Parallelism > fn.Concurrency:
		return bad("Parallelism %d not in [1, Concurrency %d]", fn.Parallelism, fn.Concurrency)
	case fn.MinInstances < 0 || fn.MaxInstances < 0 || fn.MaxQueue < 0 || fn.QueueTimeout < 0 || fn.CodeSize < 0 || fn.MaxConcurrency < 0:
		return bad("negative limit")
	case !(fn.MemoryMB > 0) || math.IsInf(fn.MemoryMB, 0):
		return bad("MemoryMB %v: want a positive finite size", fn.MemoryMB)
	}
	if _, ok := runtimes[fn.Runtime]; !ok {
		return bad("unknown runtime %q", fn.Runtime)
	}
	return nil
}
