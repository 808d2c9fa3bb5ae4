// Package warmpool keeps pools of generic, pre-warmed pods per runtime and
// hands them out to cold starts. A generic pod runs the runtime agent with
// no function loaded; specializing it (POST /v1/load) costs far less than
// creating a pod, which is what makes a cold start from the pool fast. A
// pod handed out never returns: once a function was loaded into it, it is
// that function's instance until it is deleted. Pods come from a
// [PodProvider] (local processes, Kubernetes, or the fake of package
// faastest in tests and examples).
//
// A [Manager] keeps each runtime's pool at the target its [SizingPolicy]
// sets. The default, [EWMASizing], applies Little's law in the spirit of
// reactive prewarming (as in OpenWhisk's prewarm containers and Fission's
// pool manager): the pods a pool needs are the takes expected while one pod
// is being created, take rate × creation latency, both as moving averages,
// times a safety factor, within the runtime's [Min, Max]. It replenishes in
// the background with a bounded number of creations in flight and backs
// off exponentially, with jitter, after provider errors. [Manager.Take]
// returns an idle pod at once, preferring what a [Preference] scores
// highest (e.g. a node that already caches the function's code) and never
// a pod on a node that [NodeHealth] marks unhealthy; when none is idle it
// waits, bounded by its context, for one being created. Idle pods are
// probed (GET /v1/ping must answer 404 "no_function") and replaced when
// they fail.
//
// Several managers, one per dataplane node, may share one pod population.
// Each owns the pods that rendezvous hashing (package sharding) assigns it
// among the live managers of a [Membership], and holds a [Lease] on each in
// a [LeaseStore], renewed in batches every RenewInterval. When the set of
// managers changes, an owner releases the pods that moved and their new
// owner acquires them at its next round; the pods of a manager that died
// are adopted once its leases lapse, so no pod stays unowned longer than
// the lease TTL plus one renew interval. A Take claims the pod in the
// store with the lease's fencing token, an atomic compare-and-set that
// fails once the lease was lost, so no pod is ever handed to two
// functions, whatever a paused or partitioned manager believes. The
// in-memory [MemLeaseStore] serves one process; contrib/etcd serves many.
// Every decision reads the clock through Config.Now, and with
// Config.Manual the manager runs only when [Manager.Tick] is called, so
// tests and the faastest simulator drive it on virtual time.
package warmpool
