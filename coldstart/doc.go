// Package coldstart turns a request for capacity into a Ready instance: the
// cold start. A [Starter] takes a generic warm pod of the function's runtime
// from a [Pool] (package warmpool: at once when one is idle, preferring a
// node whose cache holds the function's code, never a node marked
// unhealthy), asks the pod's agent to load the function (POST /v1/load: the
// agent fetches the code through the node's cache, verifies its digest,
// unpacks it and starts the process), then to initialize it (POST
// /v1/initialize, retried a bounded number of times in the same process, so
// a flaky init hook does not cost a new pod), and returns the instance in
// state Ready. The instance's transitions (Pending → Loading → Loaded →
// Ready, or Failed) go to the configured observers, which is how the router
// learns about it.
//
// A cold start is expensive, so the Starter makes as few as it is asked
// for. [Starter.Ensure] collapses concurrent requests for one function and
// generation: each caller states how many cold starts it wants in flight
// (the scaler's answer), and only the missing ones start, so a burst of a
// thousand requests causes the cold starts the scaler wants, not a
// thousand. A semaphore caps the cold starts in flight across functions.
// Every step has its own timeout (the defaults come from what each step
// does: a load fetches and unpacks a package and starts a process, 60 s;
// an init hook 30 s, the agent's default), and nothing waits without one.
//
// A cold start that fails deletes its pod (a pod that saw a function is
// never reused) and returns a [*StepError] naming the step that failed:
// queue, take, fetch, load or init. Every cold start, successful or not,
// reports a [Breakdown] of its time (queue, take, fetch as the agent
// measured it, load, init, total) to Hooks.OnColdStart, where cold-start
// latency is observed and its targets are checked. The Starter talks to
// agents through the small [AgentClient] interface, which
// *lifecycle.Client implements, so tests run it against fakes with
// injected latency and failures, and reads the time from a clock.Clock, so
// the simulator runs it on virtual time.
package coldstart
