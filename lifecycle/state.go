package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// State is the lifecycle state of one function instance.
type State uint32

// The states of an instance. The happy path is Pending → Loading → Loaded →
// Ready. See [CanTransition] for the full table.
const (
	// Pending: the instance is planned; no pod is bound to it yet, or the
	// pod has been taken but nothing was sent to its agent.
	Pending State = iota
	// Loading: the agent is fetching the code and starting the function
	// process (POST /v1/load in progress).
	Loading
	// Loaded: the function process listens; its init hook has not yet
	// succeeded (POST /v1/initialize pending or being retried).
	Loaded
	// Ready: the instance serves requests and is a routing candidate.
	Ready
	// Unhealthy: a health check failed; the instance is out of the routes
	// until it recovers.
	Unhealthy
	// Draining: the instance takes no new requests and finishes the ones
	// in flight before it is terminated.
	Draining
	// Terminated: the instance is gone and its pod deleted. Final.
	Terminated
	// Failed: loading or initializing failed; the pod is deleted, never
	// reused. Final.
	Failed
)

var stateNames = [...]string{"Pending", "Loading", "Loaded", "Ready", "Unhealthy", "Draining", "Terminated", "Failed"}

// String returns the state's name, e.g. "Ready".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint32(s))
}

// Live reports whether an instance in state s may still serve or become able
// to serve: every state but Draining, Terminated and Failed.
func (s State) Live() bool { return s <= Unhealthy }

// Final reports whether s has no outgoing transitions.
func (s State) Final() bool { return s == Terminated || s == Failed }

// transitions[from] is the set of states reachable from from, as a bitmask.
var transitions = [...]uint32{
	Pending:    bit(Loading) | bit(Draining) | bit(Failed),
	Loading:    bit(Loaded) | bit(Draining) | bit(Failed),
	Loaded:     bit(Ready) | bit(Draining) | bit(Failed),
	Ready:      bit(Unhealthy) | bit(Draining),
	Unhealthy:  bit(Ready) | bit(Draining),
	Draining:   bit(Terminated),
	Terminated: 0,
	Failed:     0,
}

func bit(s State) uint32 { return 1 << s }

// CanTransition reports whether the table allows from → to:
//
//	Pending   → Loading | Draining | Failed
//	Loading   → Loaded  | Draining | Failed
//	Loaded    → Ready   | Draining | Failed
//	Ready     → Unhealthy | Draining
//	Unhealthy → Ready   | Draining
//	Draining  → Terminated
//
// Terminated and Failed are final. Pending → Failed covers a cold start that
// failed before the agent was called (no pod could be taken).
func CanTransition(from, to State) bool {
	return int(from) < len(transitions) && int(to) < len(stateNames) && transitions[from]&bit(to) != 0
}

// ErrIllegalTransition is matched (errors.Is) by every [*TransitionError].
var ErrIllegalTransition = errors.New("lifecycle: illegal state transition")

// TransitionError reports a transition the table forbids, or one that lost a
// race: From is the state the instance was in when the transition was tried.
type TransitionError struct {
	InstanceID string
	From, To   State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("lifecycle: instance %s: illegal transition %s → %s", e.InstanceID, e.From, e.To)
}

// Is makes errors.Is(err, ErrIllegalTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// Transition is one recorded change of state.
type Transition struct {
	From, To State
	At       time.Time
	Reason   string
}

// Observer receives every transition of the instances it observes,
// synchronously and in order, after the state has changed. It may read the
// instance (State, History, Since) but must not call Transition or
// TransitionFrom on the same instance (that would deadlock), and should
// return quickly: the instance's next transition waits for it.
type Observer interface {
	ObserveTransition(inst *Instance, t Transition)
}

// ObserverFunc adapts a function to [Observer].
type ObserverFunc func(inst *Instance, t Transition)

// ObserveTransition calls f(inst, t).
func (f ObserverFunc) ObserveTransition(inst *Instance, t Transition) { f(inst, t) }

// Info is the identity of an instance; it does not change over its life.
type Info struct {
	// ID is unique among the dataplane's instances.
	ID string
	// FunctionID is the function the instance serves.
	FunctionID string
	// PodID, Node and Addr describe the pod the instance runs in: its
	// provider ID, the node it is on, and the host:port of its agent's
	// invocation listener, where every request goes to the function.
	PodID string
	Node  string
	Addr  string
	// Control reaches the agent's control protocol (load, initialize,
	// ping, watch): its own listener and the pod's token.
	Control Control
	// Runtime is the pod's runtime (e.g. "go", "python3.12").
	Runtime string
	// Generation numbers the deployment of the function the instance
	// runs (the dataplane's spec generation, increasing), so that a
	// rolling update tells old instances from new ones. Zero when not
	// tracked.
	Generation uint64
	// Dedicated reports a steady instance: its pod was created for this
	// function, not taken from a warm pool, and is deleted with it.
	Dedicated bool
}

// Instance is one function instance and its state machine. State is
// lock-free for readers (the router reads it on the hot path); transitions
// are serialized per instance so that observers see them in order, and each
// transition is a compare-and-swap, so of two racing transitions from the
// same state exactly one wins.
type Instance struct {
	Info

	state     atomic.Uint32
	mu        sync.Mutex // serializes transitions and their notification
	hmu       sync.Mutex // guards history; held briefly, so observers may read it
	history   []Transition
	observers []Observer
}

// maxHistory bounds the transitions an instance remembers; an instance that
// flaps between Ready and Unhealthy for days must not grow without bound.
const maxHistory = 64

// NewInstance returns an instance in state Pending, created at now, whose
// transitions are reported to observers.
func NewInstance(info Info, now time.Time, observers ...Observer) *Instance {
	in := &Instance{Info: info, observers: slices.Clone(observers)}
	in.history = append(in.history, Transition{From: Pending, To: Pending, At: now, Reason: "created"})
	return in
}

// State returns the current state.
func (in *Instance) State() State { return State(in.state.Load()) }

// Transition moves the instance to state to at time now, for reason. It
// returns a [*TransitionError] and changes nothing when the table forbids the
// move from the current state.
func (in *Instance) Transition(now time.Time, to State, reason string) error {
	return in.transition(now, nil, to, reason)
}

// TransitionFrom moves the instance from state from to state to, and fails
// with a [*TransitionError] when the instance is no longer in from. Use it
// where a decision was taken on a state that may have changed since, e.g. a
// health checker that saw Ready and now wants Unhealthy.
func (in *Instance) TransitionFrom(now time.Time, from, to State, reason string) error {
	return in.transition(now, &from, to, reason)
}

func (in *Instance) transition(now time.Time, want *State, to State, reason string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	from := in.State()
	if (want != nil && *want != from) || !CanTransition(from, to) ||
		!in.state.CompareAndSwap(uint32(from), uint32(to)) {
		return &TransitionError{InstanceID: in.ID, From: from, To: to}
	}
	t := Transition{From: from, To: to, At: now, Reason: reason}
	in.hmu.Lock()
	if len(in.history) == maxHistory {
		// Keep the creation record; drop the oldest transition after it.
		copy(in.history[1:], in.history[2:])
		in.history = in.history[:maxHistory-1]
	}
	in.history = append(in.history, t)
	in.hmu.Unlock()
	for _, o := range in.observers {
		o.ObserveTransition(in, t)
	}
	return nil
}

// History returns the recorded transitions, oldest first; the first entry
// records the creation (Pending → Pending, reason "created"). At most the
// last 63 transitions after creation are kept.
func (in *Instance) History() []Transition {
	in.hmu.Lock()
	defer in.hmu.Unlock()
	return slices.Clone(in.history)
}

// Since returns when the instance entered its current state.
func (in *Instance) Since() time.Time {
	in.hmu.Lock()
	defer in.hmu.Unlock()
	return in.history[len(in.history)-1].At
}
