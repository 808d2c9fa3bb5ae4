// Package faastest is faasplane's policy lab: fakes of the plug-in
// interfaces for unit tests, workload generators and a trace loader, and a
// deterministic simulator that replays traffic through the production
// policy objects on a virtual clock. The fakes work like net/http/httptest:
// a [PodProvider] (creation latency, failures, node placement, crashes; it
// is also a warmpool.PodWatcher and Prober), a code.Store ([CodeStore]:
// latency, transient errors, hits and misses), a router.HealthChecker
// ([HealthChecker]: flip any instance's health), a warmpool.LeaseStore
// ([LeaseStore]: expiry on a fake clock, forced expiry, outages), and a
// [Clock] that implements router.Clock; all are safe for concurrent use.
// Workloads are deterministic streams of arrivals: Poisson, on/off bursts,
// diurnal, periodic timers, a heavy-tailed population of functions shaped
// like the published Azure Functions characteristics, and the Azure
// Functions 2019 per-minute trace format ([LoadAzureTrace]).
//
// [Run] simulates a workload on one goroutine with an event queue and a
// virtual clock, so an hour of traffic takes seconds and the same config,
// workload and seed give the same [Report], bit for bit. Every decision is
// made by the real objects a faas.Dataplane is configured with: admission
// by a loadshed.Shedder, the instance of every request by a router.Router
// with the configured router.Policy (P2C by default) over the instances'
// concurrency.Slots, with a seeded rand.Source and the slot of a finished
// request handed to the longest waiter as the dataplane does; the number of
// instances, hence scale-up, keep-alive and scale to zero, by a
// concurrency.ScalingPolicy (Knative's KPA by default) fed by a
// concurrency.Meter every 2 s (between decisions, a request that finds no
// free slot makes sure that enough cold starts for the waiting requests are
// under way, as the dataplane's slow path does); the warm pool's target by
// a warmpool.SizingPolicy (EWMA by default).
// Config takes a constructor for each, which is how a platform team tests
// its own policy against the defaults (see examples/policytest). Around
// them the simulator models each function's service-time distribution and
// per-instance concurrency (with optional in-instance queueing), bounded
// wait queues with a timeout, cold starts step by step (a bound on cold
// starts in flight as in coldstart.Starter, a pod from the runtime's pool
// or a new one whose creation takes time, bounded as in warmpool.Manager,
// the code fetched from the node's LRU disk cache, a shared cache or the
// origin, process start and init hook), and the cost: instance-seconds
// from a pod's take to its instance's end, idle instance-seconds, idle pod
// seconds. Default latencies are documented on the config fields.
//
// What is not modelled: the network and the proxy hop, CPU and memory
// contention between the instances of a node, failures of any kind
// (failed pod creations or cold starts, crashed instances, and hence
// health checks, breakers and retries), forwarding between dataplane
// nodes, function-wide concurrency limits, request deadlines other than
// the queue timeout, and the warm-pool manager's leases and probes. The
// pool and cold-start mechanics are re-implemented after warmpool.Manager
// and coldstart.Starter, which own goroutines and block; the policies they
// call are the real ones. A reported figure is therefore the policies'
// effect on queueing, cold starts and cost, not a prediction of absolute
// latency on given hardware.
package faastest
