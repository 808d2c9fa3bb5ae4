// Package lifecycle tracks function instances and speaks the runtime-agent
// protocol: the state machine of one instance ([Instance], [State],
// [Transition]), the wire types of the protocol ([LoadRequest],
// [InitializeRequest], [PingResponse], [Stats]), its closed set of error
// codes ([ErrorCode], [Error], [WriteError]) and an HTTP [Client] that drives
// an agent with per-call timeouts.
//
// An instance starts Pending, becomes Loading while its agent fetches the
// code and starts the function process (POST /v1/load), Loaded once the
// process listens, and Ready when the function's init hook has succeeded
// (POST /v1/initialize, retried without restarting the process). Health
// checks move it between Ready and Unhealthy; any live instance may be
// Drained and then Terminated, and a failed load or init ends in Failed.
// Every transition is checked against one table ([CanTransition]), is a
// compare-and-swap so that of two racing transitions from the same state
// exactly one wins, records its time and reason in a bounded history, and is
// reported synchronously and in order to the instance's observers. Readers of
// the state take no lock: the router reads it on every request.
//
// On the wire an error is an HTTP status plus three headers,
// X-Faas-Error-Code, X-Faas-Error-Message and X-Faas-Request-Id, so that a
// caller can act on the code without parsing a body. The [Client] turns such
// a response back into an [*Error] that matches the sentinels (CodeNoFunction,
// CodeInitFailed...) with errors.Is, and tells a call that never reached the
// agent ([ErrUnreachable]: safe to retry anywhere) from one that reached it
// but got no usable answer ([ErrNoResponse]). Its default timeouts follow
// what each call waits for: a load fetches and unpacks a package and starts a
// process (60 s), an init hook may warm caches or open connections (30 s),
// while a ping or a stats read only touches the agent's memory (2 s).
package lifecycle
