package faas

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
)

// FunctionSpec describes a deployable function. The zero values of the
// optional fields take the documented defaults (see [FunctionSpec.withDefaults]).
type FunctionSpec struct {
	// ID names the function (see lifecycle.ValidFunctionID: 1 to 256 bytes
	// of letters, digits and "-_./:@"). Required.
	ID string
	// Runtime selects the warm pool whose generic pods can run the
	// function (e.g. "go"). Required.
	Runtime string
	// Code is the function's code package. Required, with a digest.
	Code code.Ref
	// Command and Args override the package manifest's entry command.
	Command string
	Args    []string
	// Env is added to the function process's environment.
	Env map[string]string
	// Protocol is "http1" (default) or "h2c" for gRPC functions; empty
	// means what the package manifest says.
	Protocol string

	// Mode is concurrency.Shared (default) or concurrency.Exclusive (one
	// request per instance at a time).
	Mode concurrency.Mode
	// Concurrency is the per-instance limit in Shared mode (default 10;
	// ignored in Exclusive mode, where it is 1).
	Concurrency int
	// MaxConcurrency caps requests in flight across all instances, to
	// protect the function's downstream services; 0 means no cap. Requests
	// over it get 429 concurrency_limit.
	MaxConcurrency int
	// MinInstances are kept warm even without traffic (default 0: scale
	// to zero). MaxInstances caps scale-out (default 100).
	MinInstances, MaxInstances int
	// SteadyInstances is how many of the function's instances run on
	// pods created for it (warmpool.FunctionPod: sized for the function,
	// never taken from a warm pool) rather than on warm pods: up to this
	// many, as long as the scaler wants at least that many instances.
	// Requests that find no capacity still cold-start from the warm pool
	// at once; steady instances are started in the background, after
	// which the scaler drains the burst instances they replace (steady
	// ones drain last). Default 0: every instance comes from the warm
	// pool. It needs a provider that honours PodSpec.Function.
	SteadyInstances int
	// KeepAlive is how long the last instance is kept after the function
	// went idle (default 10 min, Azure Functions' and OpenWhisk's common
	// choice); negative means none. Scale to zero also waits for the
	// scaling policy's stable window (Config.Meter, 60 s by default) to
	// see no demand.
	KeepAlive time.Duration
	// RequestTimeout bounds one invocation end to end, queueing and cold
	// start included (default 60 s).
	RequestTimeout time.Duration
	// QueueTimeout bounds how long a request waits for a free slot or a
	// cold start (default 30 s); it is separate from RequestTimeout so
	// that a request never spends its whole budget queued.
	QueueTimeout time.Duration
	// InitTimeout bounds the function's init hook (default 30 s).
	InitTimeout time.Duration
	// InitAttempts is how many times the init hook is tried in the same
	// process before the cold start fails (default 3).
	InitAttempts int

	// MemoryBytes is the memory size of one instance: the limit the agent
	// enforces on the function process and the size its invocations are
	// billed at (GB-seconds). A multiple of 1 MiB in [MinMemoryBytes,
	// MaxMemoryBytes]; default DefaultMemoryBytes (128 MiB, AWS Lambda's
	// default size).
	MemoryBytes int64
	// MilliCPU is the CPU share of one instance in thousandths of a core
	// (1000 = one core), in [MinMilliCPU, MaxMilliCPU]; default 0: no CPU
	// limit. It is not billed: GB-seconds measure memory over time.
	MilliCPU int64
}

// Defaults applied by [FunctionSpec.withDefaults].
const (
	DefaultConcurrency    = 10
	DefaultMaxInstances   = 100
	DefaultKeepAlive      = 10 * time.Minute
	DefaultRequestTimeout = 60 * time.Second
	DefaultQueueTimeout   = 30 * time.Second
	DefaultInitTimeout    = 30 * time.Second
	DefaultInitAttempts   = 3
	DefaultMemoryBytes    = 128 << 20
)

// Limits of specs, to keep outside input bounded.
const (
	MaxInstancesLimit = 10_000
	maxEnvVars        = 1024
	// MinMemoryBytes and MaxMemoryBytes bound FunctionSpec.MemoryBytes:
	// below 16 MiB no runtime starts, and no node has a terabyte for one
	// instance. Sizes are whole MiB, so that usage sums exactly in
	// MiB-milliseconds.
	MinMemoryBytes = 16 << 20
	MaxMemoryBytes = 1 << 40
	// MinMilliCPU and MaxMilliCPU bound a set FunctionSpec.MilliCPU
	// (cgroup v2's cpu.max cannot go below a hundredth of a core).
	MinMilliCPU = 10
	MaxMilliCPU = 1024 * 1000
)

func (s FunctionSpec) withDefaults() FunctionSpec {
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.Mode == concurrency.Exclusive {
		s.Concurrency = 1
	}
	if s.MaxInstances == 0 {
		s.MaxInstances = max(DefaultMaxInstances, s.MinInstances)
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = DefaultKeepAlive
	}
	if s.RequestTimeout == 0 {
		s.RequestTimeout = DefaultRequestTimeout
	}
	if s.QueueTimeout == 0 {
		s.QueueTimeout = min(DefaultQueueTimeout, s.RequestTimeout)
	}
	if s.InitTimeout == 0 {
		s.InitTimeout = DefaultInitTimeout
	}
	if s.InitAttempts == 0 {
		s.InitAttempts = DefaultInitAttempts
	}
	if s.MemoryBytes == 0 {
		s.MemoryBytes = DefaultMemoryBytes
	}
	s.Args = slices.Clone(s.Args)
	s.Env = maps.Clone(s.Env)
	return s
}

// ErrInvalidSpec is matched (errors.Is) by every spec validation error.
var ErrInvalidSpec = errors.New("faas: invalid function spec")

// FieldError reports one invalid field of a FunctionSpec.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidSpec }

// SpecError lists every invalid field of a spec.
type SpecError struct {
	ID     string
	Fields []*FieldError
}

func (e *SpecError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("faas: invalid spec for function %q: %s", e.ID, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// Unwrap returns the field errors, so errors.As finds a *FieldError.
func (e *SpecError) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

// Validate checks every field and returns a *SpecError listing all invalid
// ones, or nil. It validates the spec as given, before defaults.
func (s FunctionSpec) Validate() error {
	var fe []*FieldError
	bad := func(field, format string, args ...any) {
		fe = append(fe, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if err := lifecycle.ValidFunctionID(s.ID); err != nil {
		bad("ID", "%v", strings.TrimPrefix(err.Error(), lifecycle.ErrInvalidRequest.Error()+": "))
	}
	if s.Runtime == "" || len(s.Runtime) > 128 {
		bad("Runtime", "must be 1 to 128 bytes")
	}
	if err := s.Code.Validate(); err != nil {
		bad("Code", "%v", err)
	}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			bad("Env", "bad variable %q", k)
			break
		}
	}
	if len(s.Env) > maxEnvVars {
		bad("Env", "more than %d variables", maxEnvVars)
	}
	switch s.Protocol {
	case "", lifecycle.ProtocolHTTP1, lifecycle.ProtocolH2C:
	default:
		bad("Protocol", "want %q or %q, got %q", lifecycle.ProtocolHTTP1, lifecycle.ProtocolH2C, s.Protocol)
	}
	if s.Mode != concurrency.Shared && s.Mode != concurrency.Exclusive {
		bad("Mode", "unknown mode %d", s.Mode)
	}
	if s.Concurrency < 0 || s.Concurrency > concurrency.MaxLimit {
		bad("Concurrency", "must be in [0, %d], got %d", concurrency.MaxLimit, s.Concurrency)
	}
	if s.MaxConcurrency < 0 {
		bad("MaxConcurrency", "must not be negative, got %d", s.MaxConcurrency)
	}
	if s.MinInstances < 0 || s.MinInstances > MaxInstancesLimit {
		bad("MinInstances", "must be in [0, %d], got %d", MaxInstancesLimit, s.MinInstances)
	}
	if s.MaxInstances < 0 || s.MaxInstances > MaxInstancesLimit {
		bad("MaxInstances", "must be in [0, %d], got %d", MaxInstancesLimit, s.MaxInstances)
	}
	if s.SteadyInstances < 0 || s.SteadyInstances > MaxInstancesLimit {
		bad("SteadyInstances", "must be in [0, %d], got %d", MaxInstancesLimit, s.SteadyInstances)
	}
	if s.MaxInstances > 0 && s.MinInstances > s.MaxInstances {
		bad("MinInstances", "%d exceeds MaxInstances %d", s.MinInstances, s.MaxInstances)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RequestTimeout", s.RequestTimeout}, {"QueueTimeout", s.QueueTimeout}, {"InitTimeout", s.InitTimeout}} {
		if d.v < 0 {
			bad(d.name, "must not be negative, got %v", d.v)
		}
	}
	if rt := cmp.Or(s.RequestTimeout, DefaultRequestTimeout); s.QueueTimeout > rt {
		bad("QueueTimeout", "%v exceeds RequestTimeout %v", s.QueueTimeout, rt)
	}
	if s.InitAttempts < 0 || s.InitAttempts > 100 {
		bad("InitAttempts", "must be in [0, 100], got %d", s.InitAttempts)
	}
	if m := s.MemoryBytes; m != 0 && (m < MinMemoryBytes || m > MaxMemoryBytes || m%(1<<20) != 0) {
		bad("MemoryBytes", "must be 0 (default) or a multiple of 1 MiB in [%d, %d], got %d", int64(MinMemoryBytes), int64(MaxMemoryBytes), m)
	}
	if c := s.MilliCPU; c != 0 && (c < MinMilliCPU || c > MaxMilliCPU) {
		bad("MilliCPU", "must be 0 (no limit) or in [%d, %d], got %d", MinMilliCPU, MaxMilliCPU, c)
	}
	if len(fe) == 0 {
		return nil
	}
	return &SpecError{ID: s.ID, Fields: fe}
}
