package coldstart

import (
	"errors"
	"fmt"
	"time"
)

// Step names a step of a cold start.
type Step string

// The steps of a cold start, in order. Fetching the code happens inside the
// agent's load; a load that failed because the package could not be fetched
// or verified is reported as StepFetch.
const (
	// StepQueue is the wait for a free slot under Config.MaxConcurrent.
	StepQueue Step = "queue"
	// StepTake takes a warm pod from the pool.
	StepTake Step = "take"
	// StepFetch fetches and verifies the code package (in the agent).
	StepFetch Step = "fetch"
	// StepLoad loads the function into the pod (POST /v1/load).
	StepLoad Step = "load"
	// StepInit calls the function's init hook (POST /v1/initialize).
	StepInit Step = "init"
)

// StepError is the error of a failed cold start: the step that failed, the
// function, the pod (empty when none was taken) and the cause. The pod was
// deleted: a pod that failed a cold start is never reused.
type StepError struct {
	Step       Step
	FunctionID string
	PodID      string
	// Attempts counts the init hook's calls when Step is StepInit.
	Attempts int
	Err      error
}

func (e *StepError) Error() string {
	where := ""
	if e.PodID != "" {
		where = " on pod " + e.PodID
	}
	if e.Step == StepInit && e.Attempts > 0 {
		return fmt.Sprintf("coldstart: %s: %s failed%s after %d attempts: %v", e.FunctionID, e.Step, where, e.Attempts, e.Err)
	}
	return fmt.Sprintf("coldstart: %s: %s failed%s: %v", e.FunctionID, e.Step, where, e.Err)
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// Errors of the package; test for them with errors.Is.
var (
	// ErrClosed reports a cold start asked of a closed Starter.
	ErrClosed = errors.New("coldstart: starter closed")
	// ErrBadAgentResponse reports an agent answer that does not make
	// sense (another function's ID), as opposed to an error answer.
	ErrBadAgentResponse = errors.New("coldstart: bad agent response")
)

// Breakdown says where the time of one cold start went.
type Breakdown struct {
	// Queue is the wait for a slot under Config.MaxConcurrent.
	Queue time.Duration
	// Take is the time to take a warm pod (zero-ish on a pool hit).
	Take time.Duration
	// Fetch is the agent's time to fetch and verify the code, as it
	// reported it (part of Load).
	Fetch time.Duration
	// Load is the time of POST /v1/load, fetch included.
	Load time.Duration
	// Init is the time of the init hook's calls, retries and their delays
	// included.
	Init time.Duration
	// Total is the time from the request to Ready (or to the failure).
	Total time.Duration
	// CacheHit is the agent's LoadResponse.CacheHit: the package was
	// already unpacked on the node, so nothing was fetched or unpacked.
	CacheHit bool
	// InitAttempts counts the init hook's calls.
	InitAttempts int
}
