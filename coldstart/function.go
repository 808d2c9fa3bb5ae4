package coldstart

import (
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// Function is what a cold start needs to know about a function: which pods
// can run it, where its code is, and how to start and initialize it. The
// dataplane maps its own function specification onto it.
type Function struct {
	// ID names the function (see lifecycle.ValidFunctionID).
	ID string
	// Generation distinguishes the function's deployments: concurrent
	// cold starts collapse only within one ID and generation, so a
	// request for a new version never waits for an instance of the old.
	Generation uint64
	// Runtime is the runtime of the pods the function runs in.
	Runtime string
	// Code references the code package; its digest is required.
	Code lifecycle.CodeRef
	// Command and Args override the package manifest's entry command.
	Command string
	Args    []string
	// Env is added to the function process's environment.
	Env map[string]string
	// Protocol is "http1" or "h2c"; empty means the manifest's.
	Protocol string
	// Limits bound the instance.
	Limits lifecycle.Limits
	// StartTimeout bounds how long the agent waits for the function
	// process to listen; zero means the agent's default.
	StartTimeout time.Duration
	// InitTimeout bounds one call of the function's init hook; zero means
	// DefaultInitTimeout.
	InitTimeout time.Duration
	// InitAttempts is how many times the init hook is called before the
	// cold start fails (in the same process); zero means
	// DefaultInitAttempts.
	InitAttempts int
}

// ErrInvalidFunction is matched by the error of a cold start refused
// because its Function is invalid; no pod was taken for it.
var ErrInvalidFunction = errors.New("coldstart: invalid function")

// loadRequest maps f onto the agent's load request.
func (f *Function) loadRequest() lifecycle.LoadRequest {
	return lifecycle.LoadRequest{
		FunctionID:         f.ID,
		Code:               f.Code,
		Runtime:            f.Runtime,
		Command:            f.Command,
		Args:               f.Args,
		Env:                f.Env,
		Protocol:           f.Protocol,
		Limits:             f.Limits,
		StartTimeoutMillis: f.StartTimeout.Milliseconds(),
	}
}

// Validate checks f as the agent would check its load request (ID, code
// reference with its digest and size, runtime, command, environment,
// protocol, limits) and its timeouts, and returns an error wrapping
// ErrInvalidFunction that names the first bad field.
func (f *Function) Validate() error {
	req := f.loadRequest()
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidFunction, f.ID, err)
	}
	if f.StartTimeout < 0 || f.InitTimeout < 0 || f.InitAttempts < 0 {
		return fmt.Errorf("%w %q: StartTimeout, InitTimeout and InitAttempts must not be negative", ErrInvalidFunction, f.ID)
	}
	return nil
}
