package lifecycle

import (
	"errors"
	"fmt"
	"time"
)

// The agent's control endpoints, served on its control listener only (see
// [Control]); on the invocation listener these paths reach the function
// like any other.
const (
	PathLoad       = "/v1/load"
	PathInitialize = "/v1/initialize"
	PathPing       = "/v1/ping"
	PathStats      = "/v1/stats"
	PathWatch      = "/v1/watch"
	// PathMetrics serves the agent's statistics in the Prometheus text
	// exposition format (version 0.0.4), for scrapers that present the
	// control token.
	PathMetrics = "/v1/metrics"
)

// HeaderBilledMillis is the HTTP trailer in which an agent reports the
// billed duration of an invocation that reached the function: the time
// from the moment the agent started proxying it to the end of the
// response body, rounded up to whole milliseconds, as a decimal integer.
// The agent declares it with the Trailer mechanism, so it follows the
// body on HTTP/1.1 (chunked) and HTTP/2 alike; refused invocations carry
// none. The sum over an agent's invocations is [Stats.BilledMillis].
const HeaderBilledMillis = "X-Faas-Billed-Ms"

// The states an agent reports (PingResponse.State, WatchResponse.State).
const (
	// AgentGeneric: a warm pod, no function loaded.
	AgentGeneric = "generic"
	// AgentLoading: a load is in progress.
	AgentLoading = "loading"
	// AgentLoaded: the function process listens; init has not succeeded.
	AgentLoaded = "loaded"
	// AgentReady: the function is initialized and serves invocations.
	AgentReady = "ready"
	// AgentExited: the function process has exited; the pod is of no
	// further use.
	AgentExited = "exited"
	// AgentFailed: the pod is unusable without a function loaded: a hot
	// load failed, or the runtime's bootstrap process exited before any
	// load. It is never reused; the dataplane deletes it.
	AgentFailed = "failed"
)

// How an agent enforces an instance's memory limit (LoadResponse.MemoryLimit,
// Stats.MemoryLimit).
const (
	// MemoryLimitCgroup2: a cgroup v2 child of the agent's cgroup with
	// memory.max; the kernel's OOM killer ends the function beyond it.
	MemoryLimitCgroup2 = "cgroup2"
	// MemoryLimitCgroup1: a cgroup v1 child in the memory hierarchy with
	// memory.limit_in_bytes (hosts that still mount the v1 controller,
	// when the agent is configured to use it).
	MemoryLimitCgroup1 = "cgroup1"
	// MemoryLimitRlimit: a process limit (RLIMIT_DATA, set with prlimit
	// once the function serves, to its data size then plus the limit):
	// allocations beyond fail instead of the kernel killing it.
	MemoryLimitRlimit = "rlimit"
	// MemoryLimitNone: not enforced (no limit asked, or the agent is
	// configured not to enforce it).
	MemoryLimitNone = "none"
)

// Where an instance's protocol came from (LoadResponse.ProtocolSource,
// Stats.ProtocolSource).
const (
	// ProtocolFromRequest: the load request named it (the function spec).
	ProtocolFromRequest = "request"
	// ProtocolFromManifest: the package manifest named it.
	ProtocolFromManifest = "manifest"
	// ProtocolFromRuntime: the runtime's bootstrap declared it when it
	// became ready.
	ProtocolFromRuntime = "runtime"
	// ProtocolDetected: nobody named it; the agent probed the function's
	// port with the HTTP/2 connection preface.
	ProtocolDetected = "detected"
)

// Protocols a function process may speak; the agent's proxy uses the
// matching transport.
const (
	ProtocolHTTP1 = "http1" // HTTP/1.1, the default
	ProtocolH2C   = "h2c"   // HTTP/2 without TLS (gRPC functions)
)

// CodeRef references a function's code package on the wire: where it is,
// its sha256 digest ("sha256:" and 64 lowercase hex digits) and its size in
// bytes. The agent maps it to code.Ref.
type CodeRef struct {
	URI    string `json:"uri"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Limits bounds what a loaded function may use.
type Limits struct {
	// Concurrency is the instance's concurrency limit: requests in flight
	// on the agent beyond it get 429. Zero means 1.
	Concurrency int `json:"concurrency,omitempty"`
	// MemoryBytes bounds the instance's memory; zero means unlimited. The
	// agent enforces it with a cgroup where it can create one, else with a
	// process limit (LoadResponse.MemoryLimit says which), and passes it to
	// the function as FAAS_MEMORY_BYTES.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// TimeoutMillis bounds one invocation on the agent; zero means no
	// bound beyond the caller's.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
	// MilliCPU bounds the instance's CPU time in thousandths of a core
	// (1000: one core); the agent enforces it with a cgroup's CPU quota
	// where it can (LoadResponse.CPULimit says whether it did). Zero means
	// unlimited.
	MilliCPU int64 `json:"milli_cpu,omitempty"`
}

// LoadRequest is the body of POST /v1/load: it turns a generic warm pod into
// an instance of one function.
type LoadRequest struct {
	// FunctionID is the function to load; invocations must carry it.
	FunctionID string `json:"function_id"`
	// Code is the code package to fetch, verify and unpack.
	Code CodeRef `json:"code"`
	// Runtime is the runtime the function needs; the agent refuses a
	// function of another runtime than its own.
	Runtime string `json:"runtime"`
	// Command and Args override the package manifest's entry command.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Env is added to the function process's environment.
	Env map[string]string `json:"env,omitempty"`
	// Protocol overrides the manifest's protocol ("http1" or "h2c").
	Protocol string `json:"protocol,omitempty"`
	// Limits bounds the instance.
	Limits Limits `json:"limits"`
	// StartTimeoutMillis bounds how long the agent waits for the process
	// to listen; zero means the agent's default.
	StartTimeoutMillis int64 `json:"start_timeout_ms,omitempty"`
}

// Limits on a LoadRequest, checked by Validate.
const (
	MaxFunctionIDLen = 256
	maxEnv           = 1024
	maxArgs          = 256
	maxStringLen     = 4096
)

// ErrInvalidRequest is matched by every validation error of the wire types.
var ErrInvalidRequest = errors.New("lifecycle: invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// ValidFunctionID reports whether id can name a function: 1 to 256 bytes of
// ASCII letters, digits and "-_./:@", not starting with "/" or ".". The
// gateway and the agent apply the same rule, so an ID that passes one passes
// the other.
func ValidFunctionID(id string) error {
	if id == "" || len(id) > MaxFunctionIDLen {
		return invalid("function ID must be 1 to %d bytes", MaxFunctionIDLen)
	}
	if id[0] == '/' || id[0] == '.' {
		return invalid("function ID %q must not start with %q", id, id[0])
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == '@':
		default:
			return invalid("function ID contains byte %#02x at %d", c, i)
		}
	}
	return nil
}

// Validate checks the request's fields and returns an error wrapping
// ErrInvalidRequest that names the first bad field.
func (r *LoadRequest) Validate() error {
	if err := ValidFunctionID(r.FunctionID); err != nil {
		return fmt.Errorf("function_id: %w", err)
	}
	if r.Code.URI == "" || len(r.Code.URI) > maxStringLen {
		return invalid("code.uri: must be 1 to %d bytes", maxStringLen)
	}
	if !validDigest(r.Code.Digest) {
		return invalid("code.digest: want \"sha256:\" and 64 lowercase hex digits, got %q", truncate(r.Code.Digest, 80))
	}
	if r.Code.Size <= 0 {
		return invalid("code.size: must be > 0, got %d", r.Code.Size)
	}
	if r.Runtime == "" || len(r.Runtime) > 128 {
		return invalid("runtime: must be 1 to 128 bytes")
	}
	if len(r.Command) > maxStringLen {
		return invalid("command: longer than %d bytes", maxStringLen)
	}
	if len(r.Args) > maxArgs {
		return invalid("args: more than %d", maxArgs)
	}
	for i, a := range r.Args {
		if len(a) > maxStringLen {
			return invalid("args[%d]: longer than %d bytes", i, maxStringLen)
		}
	}
	if len(r.Env) > maxEnv {
		return invalid("env: more than %d variables", maxEnv)
	}
	for k, v := range r.Env {
		if k == "" || len(k) > 256 || len(v) > maxStringLen {
			return invalid("env: bad variable %q", truncate(k, 80))
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c == '=' || c == 0 {
				return invalid("env: variable name %q contains %q", truncate(k, 80), c)
			}
		}
		for i := 0; i < len(v); i++ {
			if v[i] == 0 {
				return invalid("env: value of %q contains NUL", truncate(k, 80))
			}
		}
	}
	switch r.Protocol {
	case "", ProtocolHTTP1, ProtocolH2C:
	default:
		return invalid("protocol: want %q or %q, got %q", ProtocolHTTP1, ProtocolH2C, truncate(r.Protocol, 80))
	}
	if r.Limits.Concurrency < 0 || r.Limits.MemoryBytes < 0 || r.Limits.TimeoutMillis < 0 || r.Limits.MilliCPU < 0 || r.StartTimeoutMillis < 0 {
		return invalid("limits and timeouts must not be negative")
	}
	return nil
}

func validDigest(d string) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+64 || d[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(d); i++ {
		if c := d[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Timings is a breakdown of where an agent spent a load, in milliseconds
// (fractional).
type Timings struct {
	FetchMillis  float64 `json:"fetch_ms"`
	UnpackMillis float64 `json:"unpack_ms"`
	// StartMillis is the time until the function served: starting its
	// process until it listened, or, for a hot load, telling the running
	// bootstrap to load it until it answered.
	StartMillis float64 `json:"start_ms"`
	// ProbeMillis is the part of StartMillis spent detecting the
	// protocol (zero when it was named).
	ProbeMillis float64 `json:"probe_ms,omitempty"`
}

// LoadResponse is the body of a successful POST /v1/load.
type LoadResponse struct {
	FunctionID string `json:"function_id"`
	PID        int    `json:"pid"`
	Protocol   string `json:"protocol"`
	// ProtocolSource says where Protocol came from: one of the
	// Protocol... sources (ProtocolDetected when the agent probed).
	ProtocolSource string  `json:"protocol_source,omitempty"`
	CacheHit       bool    `json:"cache_hit"`
	Timings        Timings `json:"timings"`
	// HotLoad is true when the function was loaded into the runtime's
	// bootstrap process that was already running in the pod, false when a
	// process was started for it.
	HotLoad bool `json:"hot_load,omitempty"`
	// MemoryLimit is how the memory limit is enforced: one of the
	// MemoryLimit... mechanisms.
	MemoryLimit string `json:"memory_limit,omitempty"`
	// CPULimit is how Limits.MilliCPU is enforced: "cgroup2", "cgroup1"
	// or "none".
	CPULimit string `json:"cpu_limit,omitempty"`
}

// InitializeRequest is the body of POST /v1/initialize.
type InitializeRequest struct {
	FunctionID string `json:"function_id"`
	// TimeoutMillis bounds the init hook; zero means the agent's default.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
}

// Validate checks the request's fields.
func (r *InitializeRequest) Validate() error {
	if err := ValidFunctionID(r.FunctionID); err != nil {
		return fmt.Errorf("function_id: %w", err)
	}
	if r.TimeoutMillis < 0 {
		return invalid("timeout_ms: must not be negative")
	}
	return nil
}

// InitializeResponse is the body of a successful POST /v1/initialize.
type InitializeResponse struct {
	FunctionID string `json:"function_id"`
	// Attempts counts the init hook's calls so far, this one included; a
	// call after success is a no-op and does not count.
	Attempts int `json:"attempts"`
	// AlreadyInitialized is true when init had succeeded before this call.
	AlreadyInitialized bool    `json:"already_initialized"`
	Millis             float64 `json:"ms"`
}

// PingResponse is the body of GET /v1/ping when a function is loaded.
type PingResponse struct {
	FunctionID string `json:"function_id"`
	// State is AgentLoaded (init pending) or AgentReady.
	State string `json:"state"`
	PID   int    `json:"pid"`
	Node  string `json:"node,omitempty"`
}

// LatencySummary summarizes invocation latencies in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Stats is the body of GET /v1/stats.
type Stats struct {
	FunctionID string         `json:"function_id,omitempty"`
	InFlight   int            `json:"in_flight"`
	Limit      int            `json:"limit"`
	Completed  int64          `json:"completed"`
	Failed     int64          `json:"failed"`
	Rejected   int64          `json:"rejected"`
	Latency    LatencySummary `json:"latency"`
	Uptime     time.Duration  `json:"uptime_ns"`

	// Runtime is the agent's runtime; Instance the pod it serves, when the
	// pod provider named it.
	Runtime  string `json:"runtime,omitempty"`
	Instance string `json:"instance,omitempty"`
	// State is the agent's state (one of the Agent... states).
	State string `json:"state,omitempty"`
	// HotLoad is true when the function was hot-loaded into the runtime's
	// bootstrap.
	HotLoad bool `json:"hot_load,omitempty"`
	// Protocol is the protocol the agent speaks to the function, and
	// ProtocolSource where it came from (ProtocolDetected: probed).
	Protocol       string `json:"protocol,omitempty"`
	ProtocolSource string `json:"protocol_source,omitempty"`
	// BilledMillis is the sum of the billed durations of the invocations
	// that reached the function (each rounded up to a millisecond): the
	// sum of the HeaderBilledMillis trailers the agent sent, plus those of
	// responses that could not carry one (aborted, or without a body).
	BilledMillis int64 `json:"billed_ms"`
	// MemoryLimitBytes is the memory limit asked for (0: none) and
	// MemoryLimit how it is enforced (one of the MemoryLimit...
	// mechanisms); MilliCPU and CPULimit likewise for the CPU.
	MemoryLimitBytes int64  `json:"memory_limit_bytes,omitempty"`
	MemoryLimit      string `json:"memory_limit,omitempty"`
	MilliCPU         int64  `json:"milli_cpu,omitempty"`
	CPULimit         string `json:"cpu_limit,omitempty"`
	// MemoryLimitKills counts the function processes ended for exceeding
	// their memory limit (the kernel's OOM kill in the cgroup, or an
	// allocation refused under RLIMIT_AS that made the process exit).
	MemoryLimitKills int64 `json:"memory_limit_kills"`
	// LogLines counts the lines of function output passed to the log
	// sink; LogLinesDropped those dropped by the per-instance rate limit;
	// LogLinesTruncated those cut to the agent's maximum line size.
	LogLines          int64 `json:"log_lines"`
	LogLinesDropped   int64 `json:"log_lines_dropped"`
	LogLinesTruncated int64 `json:"log_lines_truncated"`
}

// WatchResponse is the body of GET /v1/watch?state=S: the agent answers as
// soon as its state differs from S (at once when it already does), or with
// its unchanged state when the wait (?wait=, default 30 s, at most 60 s)
// ends. A dataplane holds one such long poll per instance, so that the
// death of a function process reaches it without waiting for a health
// check.
type WatchResponse struct {
	// FunctionID is the loaded function ("" on a generic pod).
	FunctionID string `json:"function_id,omitempty"`
	// State is one of the Agent... states.
	State string `json:"state"`
	// Exit describes how the function process ended (state AgentExited).
	Exit string `json:"exit,omitempty"`
}

// Bounds of a watch's wait.
const (
	DefaultWatchWait = 30 * time.Second
	MaxWatchWait     = 60 * time.Second
)
