// Package faas is the dataplane of a Function-as-a-Service platform, as a
// library: a [Dataplane] takes invocations of functions, over HTTP (it is an
// http.Handler, the gateway) or in-process ([Dataplane.Invoke], for trigger
// consumers that bypass the gateway), and runs each on an instance of its
// function with a free concurrency slot, starting one from a pool of generic
// pre-warmed pods when there is none. The platform team keeps its control
// plane and plugs in where its infrastructure differs: a
// warmpool.PodProvider (local processes, Kubernetes...), a code.Store for
// the functions' packages, health checkers, scaling and routing policies.
//
// One invocation goes through the packages below in order. The load
// shedder (loadshed) admits it or refuses it early with 503 and Retry-After,
// the callers above their fair share first; the function-wide concurrency
// limit (concurrency) protects what the function calls. The router picks a
// Ready instance with a free slot (power of two choices on utilization by
// default). When every slot is taken, the request waits in the function's
// bounded queue for at most its queue timeout while cold starts (coldstart)
// take warm pods (warmpool), have their agents fetch the code through the
// node's cache (coldstart/code), load and initialize it; the first freed or
// new slot goes to the longest waiter. The request is proxied to the
// instance's agent (agent), which passes it to the function process; a
// failure that never reached the function is retried once on another
// instance. The slot is released, and the request's latency and the
// function's demand feed the shedder and the autoscaler.
//
// A control loop owns time: it samples each function's demand, asks its
// scaling policy (a Knative-style KPA by default) how many instances it
// should have, starts the missing ones before requests queue, drains the
// excess after the keep-alive (down to zero), and rolls instances when a
// function's code changes. Health checks, breaker ejections and crashed
// pods take instances out of the routes; the router asks for replacements.
// Errors leave the Dataplane as *lifecycle.Error values, and on the wire as
// an HTTP status with X-Faas-Error-Code, X-Faas-Error-Message and
// X-Faas-Request-Id.
//
// Several Dataplanes can share the functions ([Config.Cluster]): each
// function is owned by one node, chosen by weighted rendezvous hashing of
// its ID, so that its counters, queue and instances live in one place, and
// a request that lands on another node is forwarded to the owner once.
package faas
