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
// back, and the third ejection replaces it (Config.Replace) and drains it.
// A request that failed before reaching the function is retried once on
// another instance ([Router.Retry]); one that reached it only when
// idempotent; and retries in flight stay within 20 % of the function's
// active requests (at least 3), Linkerd's retry budget.
//
// Policies, breakers and the retry budget are deterministic: they take the
// time as an argument and their randomness from an injectable [rand.Source],
// so a simulator replays them on virtual time with a seeded source. The
// [HealthMonitor] is the only part that owns goroutines and a clock (an
// injectable [Clock]); its Close stops them.
package router
