// Package faastest is faasplane's policy lab: fakes of the plug-in
// interfaces for unit tests, workload generators and trace loaders, and a
// deterministic simulator that replays traffic through the production
// policy objects on a virtual clock. The fakes work like net/http/httptest:
// a [PodProvider] (creation latency, failures, node placement, crashes; it
// is also a warmpool.PodWatcher and Prober), a code.Store ([CodeStore]:
// latency, transient errors, hits and misses), a router.HealthChecker
// ([HealthChecker]: flip any instance's health), a warmpool.LeaseStore
// ([LeaseStore]: expiry on a fake clock, forced expiry, outages), and a
// [Clock] that implements the module's clock.Clock; all are safe for
// concurrent use. Workloads are deterministic streams of arrivals:
// Poisson, on/off bursts, diurnal, periodic timers, a heavy-tailed
// population of functions shaped like the published Azure Functions
// characteristics, and the public Azure Functions traces: the 2019
// per-minute invocation counts ([LoadAzureTrace], packed and streamed a
// minute at a time) with their execution-time percentiles and memory
// ([Trace.LoadDurations], [Trace.LoadMemory]), and the 2021
// per-invocation trace ([OpenAzure2021], streamed as it is read). A small
// synthetic sample of each format is bundled ([Samples]).
//
// [Run] simulates a workload on one goroutine with an event queue and a
// virtual clock, so a day of traffic takes seconds and the same config,
// workload and seed give the same [Report], bit for bit. Every decision is
// made by the real objects a faas.Dataplane is configured with: admission
// by a loadshed.Shedder per dataplane node, a function-wide limit by a
// concurrency.FunctionLimit, the instance of every request by a
// router.Router with the configured router.Policy (P2C by default) over
// the instances' concurrency.Slots, with a seeded rand.Source, the slot of
// a finished request handed to the longest waiter, and failed requests
// retried through router.Retry, as the dataplane does; the owner of every
// function by a sharding.Table; the number of instances, hence scale-up,
// keep-alive and scale to zero, by a concurrency.ScalingPolicy (Knative's
// KPA by default; concurrency.KeepAlive and concurrency.Hybrid are there
// to compare) fed by a concurrency.Meter, with the dataplane's own
// concurrency.PlanRound; the warm pools' targets by a
// warmpool.SizingPolicy (EWMA by default). A function whose policy
// promises that its answer stays the same (concurrency.Quiet) sleeps
// until that changes, so that a replay of 100,000 functions pays for the
// few with traffic or a timer due. Config takes a constructor for each
// policy, which is how a platform team tests its own against the defaults
// (see examples/policytest and examples/keepalive-lab). Around them the
// simulator models each function's service-time distribution (or each
// invocation's, from a trace), per-instance concurrency with optional
// in-instance queueing, instance memory, bounded wait queues with a
// timeout, cold starts step by step (a bound on cold starts in flight as
// in coldstart.Starter, a pod from the runtime's pool or a new one whose
// creation takes time, bounded as in warmpool.Manager, the code fetched
// from the node's LRU disk cache, a shared cache or the origin, process
// start and init hook), unequal node and instance speeds, the network hop
// to the instance, several dataplane nodes with forwarding to each
// function's owner, instance crashes and node losses, and the cost:
// instance-seconds and GB-seconds, idle or not, and idle pod-seconds.
// Default latencies are documented on the config fields; the Config's
// zero value is one dataplane with every package default, and
// [ClusterConfig] sizes a platform for a number of functions. The report
// says which limits, if any, decided the outcome rather than the policies
// ([Report.Decided]).
//
// What is not modelled: CPU and memory contention between the instances
// of a node beyond a fixed speed factor, failures of pod creations and of
// init hooks, slow (rather than dead) instances and the breakers'
// half-open probes (the router's tick is not exported), the health
// monitor's own checks (a dead instance is taken out after
// Failures.Detect), the loss of a dataplane node, request deadlines other
// than the queue timeout, and the warm-pool manager's leases and probes.
// The pool and cold-start mechanics are re-implemented after
// warmpool.Manager and coldstart.Starter, which own goroutines and block;
// a test replays bursts of cold starts through the real ones on virtual
// time (in a testing/synctest bubble) and requires the same durations,
// so the two cannot drift apart unnoticed. A reported figure is therefore
// the policies' effect on queueing, cold starts and cost, not a
// prediction of absolute latency on given hardware.
package faastest
