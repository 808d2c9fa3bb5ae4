// Package router decides, for every request, which instance of a function
// serves it, and keeps the route table true while instances come, fail and
// go.
//
// A [Router] maps each function ID to a copy-on-write snapshot of its
// routable instances behind an atomic pointer. [Router.Pick] loads the
// snapshot, asks the [Policy]'s [Picker] for a candidate that is not full,
// and takes one of its [concurrency.Slots] with a compare-and-swap; a slot
// lost to a concurrent request makes it ask again, a bounded number of
// times. The result is a [Route], a two-word value that the caller releases
// with the request's [Outcome]. Pick and a successful Release take no lock
// and allocate nothing, and the function lookup costs the same for ten
// functions as for a hundred thousand. Changes (Add, Remove, a breaker
// opening, a health verdict) take the function's lock and publish a new
// snapshot; a member flag re-checked after each acquisition makes them take
// effect the moment they return, even for picks that loaded an older
// snapshot. The default policy is power-of-two-choices on utilization
// (Mitzenmacher, 2001): two random instances, the less utilized wins. It is
// as cheap as random choice, avoids the herding of a least-loaded scan under
// concurrency, and keeps the tail short when instances are unequally fast
// (see the model in the tests); least-utilized, round robin, random and
// first-available are there to compare with or to pack.
//
// An instance leaves the candidates when its lifecycle state leaves Ready,
// when a health check says so, or when its [Breaker] opens, and leaves the
// table when it is removed, drained, reassigned or migrated. Health is
// pulled ([HealthChecker], by default GET /v1/ping: readiness every 2 s and
// out after 3 failures, liveness every 45 s and replaced after 3, as in
// Kubernetes' probes and ByteFaaS) and pushed ([HealthSource], a host-local
// checker's reports); the first of a push, the pull threshold or an
// instance_reassigned answer takes the instance out. Outlier ejection
// follows Envoy's: 5 consecutive failures eject an instance for 30 s times
// the number of its ejections (at most 300 s, plus jitter), never more than
// 10 % of a function's instances (at least one); a half-open probe lets it
// back, and the third ejection replaces it (Hooks.Replace) and drains it.
// A request that failed before reaching the function is retried once on
// another instance ([Router.Retry]); one that reached it only when
// idempotent; and retries in flight stay within 20 % of the function's
// active requests (at least 3), Linkerd's retry budget.
//
// Pull checks share one weak point: the checker's own network. If the
// dataplane loses its link to a node, every check of that node's instances
// fails, and acting on those checks would drain healthy instances and ask
// for as many replacements. So the monitor has a panic mode, like Envoy's
// healthy panic threshold. It counts the instances whose latest pull check
// failed or that pull checks hold out, after each round and before any of
// its verdicts is applied. It panics for a function when more than
// HealthConfig.PanicThreshold (50 %) of its instances, rounded down, are
// failing, and for a node when all of the instances routed on that node
// are failing, of whatever function. Either way the group needs at least
// HealthConfig.PanicMinInstances (2) instances. During a panic, failed pull
// checks of the instances concerned neither take them out nor replace
// them. The instances that pull checks had taken out are let back
// ([CauseHealthPanic]), and their failures count from zero again once the
// panic ends. Push reports, instance_reassigned answers and breakers keep
// working, so real traffic still ejects an instance that is really broken.
// The count covers failures that overlap in time, not failures over time:
// a trickle of failures is handled instance by instance as long as the
// share failing at once stays within the threshold, and pull checks never
// hold out more than that share of a function of two instances or more.
// Entering and leaving a panic is logged once each at warn level, and
// [Stats].Panicking and [HealthMonitor.PanickingNodes] report it.
//
// Policies, breakers and the retry budget are deterministic: they take the
// time as an argument and their randomness from an injectable [rand.Source],
// so a simulator replays them on virtual time with a seeded source. The
// [HealthMonitor] is the only part that owns goroutines and a clock (an
// injectable [Clock]); its Close stops them.
package router
