package router

import (
	"fmt"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// EventKind says what happened to a route.
type EventKind uint8

const (
	// RouteAdded: an instance joined its function's route table.
	RouteAdded EventKind = iota + 1
	// RouteRemoved: an instance left the route table for good.
	RouteRemoved
	// RouteEjected: an instance stopped being a candidate but stays in
	// the table: its breaker opened, a health check failed, or it left
	// the Ready state.
	RouteEjected
	// RouteHalfOpen: an ejected instance's ejection ran out; it takes one
	// probe request at a time until a probe succeeds or fails.
	RouteHalfOpen
	// RouteReadmitted: an instance became a full candidate again (its
	// probe succeeded, its health recovered, it became Ready).
	RouteReadmitted
)

var eventNames = [...]string{"", "added", "removed", "ejected", "half-open", "readmitted"}

// String returns the kind's name, e.g. "ejected".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Cause is the machine-readable reason of an [Event], suitable as a metric
// label; Event.Reason says the same for people.
type Cause uint8

const (
	// CauseCaller: the Router's owner called Add or Remove.
	CauseCaller Cause = iota + 1
	// CauseBreaker: the instance's breaker opened, went half-open or
	// closed again.
	CauseBreaker
	// CauseHealthPull: the pull (readiness) health check crossed its
	// failure threshold, or succeeded again.
	CauseHealthPull
	// CauseHealthPush: a pushed health report.
	CauseHealthPush
	// CauseLiveness: the liveness check crossed its failure threshold;
	// the instance is replaced.
	CauseLiveness
	// CauseReassigned: the agent answered instance_reassigned (or
	// no_function): the address serves another function now.
	CauseReassigned
	// CauseMigrated: the instance was ejected too many times and is
	// replaced.
	CauseMigrated
	// CauseState: the instance's lifecycle state changed (it left or
	// re-entered Ready).
	CauseState
	// CauseExited: the instance's function process exited (the agent
	// answered function_exited, or reported it); the instance is
	// replaced.
	CauseExited
	// CauseHealthPanic: the [HealthMonitor] let back an instance its pull
	// checks had taken out, because so many instances of its function (or
	// all on its node) fail them together that it suspects its own
	// network (HealthConfig.PanicThreshold).
	CauseHealthPanic
)

var causeNames = [...]string{"", "caller", "breaker", "health_pull", "health_push", "liveness", "instance_reassigned", "migrated", "state", "function_exited", "health_panic"}

// String returns the cause's name, e.g. "breaker".
func (c Cause) String() string {
	if c > 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// Event is a change of one route.
type Event struct {
	Kind     EventKind
	Cause    Cause
	Reason   string
	At       time.Time
	Instance *lifecycle.Instance
	// Until is when a breaker ejection ends (RouteEjected with
	// CauseBreaker); zero otherwise.
	Until time.Time
}

// Observer receives route events. The router calls it synchronously while
// it holds the function's write lock, so the events of one function arrive
// in order. It must return quickly and must not call back into the Router
// to change routes (Add, Remove, ReportHealth, Release with a failure...),
// nor call Routes, nor change an instance's lifecycle state: all of them
// take locks the router holds and would deadlock. The lock-free reads
// (Pick, Acquire, Capacity, Stats) are allowed.
type Observer interface {
	ObserveRoute(e Event)
}

// ObserverFunc adapts a function to [Observer].
type ObserverFunc func(e Event)

// ObserveRoute calls f(e).
func (f ObserverFunc) ObserveRoute(e Event) { f(e) }
