package warmpool

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// Pod is a generic pod: a sandbox running the runtime agent, not yet bound
// to a function. It is a value; the provider is the source of truth.
type Pod struct {
	// ID is unique among the provider's pods (for Kubernetes, the pod
	// name). The sharded Manager hashes it to pick the pod's owner.
	ID string
	// Node is the machine the pod runs on: the key of node health and of
	// code locality.
	Node string
	// Addr is the host:port of the agent's invocation listener: every
	// request sent there goes to the function (once one is loaded).
	Addr string
	// Control reaches the agent's control protocol: the host:port of its
	// control listener and the pod's control token, which the provider
	// created with the pod (lifecycle.NewControlToken) and handed to the
	// agent out of band. The dataplane loads, initializes, pings and
	// watches the pod through it; nothing from the gateway ever reaches
	// it.
	Control lifecycle.Control
	// Runtime is the language runtime the pod serves, e.g. "python3.12".
	Runtime string
	// Labels are the provider's key/value metadata.
	Labels map[string]string
	// Created is when the provider created the pod.
	Created time.Time
}

// Clone returns a copy of p that shares no map with it.
func (p Pod) Clone() Pod {
	p.Labels = maps.Clone(p.Labels)
	return p
}

// HolderLabel is the label a Manager sets on the pods it creates: its
// [Manager.Holder]. A Manager with a private lease store tells by it that
// another manager shares its pod population, which is unsafe: see
// [ErrSharedPopulation].
const HolderLabel = "faasplane.io/holder"

// FunctionLabel is the label of a pod dedicated to one function (a steady
// instance, see [FunctionPod]): its value is the function's ID, sanitized
// into a label value. No Manager adopts such a pod into a pool.
const FunctionLabel = "faasplane.io/function"

// FunctionPod, in a [PodSpec], asks for a pod dedicated to one function
// rather than a generic one: a steady instance, created for the function
// directly and deleted with it, which carries steady traffic while the warm
// pools absorb bursts (ByteFaaS's deployment pods). The dataplane loads the
// function into it as into a warm pod once it is up; a provider may size it
// for the function (Limits) and schedule it like the function's other pods.
type FunctionPod struct {
	// FunctionID and Generation name the function and its deployment.
	FunctionID string
	Generation uint64
	// Limits are the instance's memory and CPU limits.
	Limits lifecycle.Limits
}

// PodSpec is what a Manager asks a provider to create.
type PodSpec struct {
	// Name is the ID the Manager would like the pod to have. Providers
	// should use it as the pod's ID: the sharded Manager chooses names that
	// hash to itself, so that a new pod needs no handover. A provider that
	// assigns IDs of its own still works; its pods are handed over to
	// their owners.
	Name string
	// Runtime is the runtime the pod must serve.
	Runtime string
	// Labels are added to the pod's labels.
	Labels map[string]string
	// Function, when set, asks for a pod dedicated to one function
	// ([FunctionPod]); Labels then hold its [FunctionLabel]. Managers
	// never set it.
	Function *FunctionPod
}

// PodProvider creates, deletes and lists generic pods. Implementations:
// faastest.PodProvider (in memory, for tests and examples), pods/local (agents
// as local processes), contrib/kubernetes. They must be safe for concurrent
// use.
type PodProvider interface {
	// Create creates a pod for spec.Runtime and returns once its agent
	// listens on Pod.Addr. It honours ctx: a cancelled creation must not
	// leave a pod behind, or must delete it later.
	Create(ctx context.Context, spec PodSpec) (Pod, error)
	// Delete deletes the pod with the given ID; deleting a pod that does
	// not exist returns an error wrapping ErrPodNotFound.
	Delete(ctx context.Context, id string) error
	// List returns every pod of the provider, sorted by ID.
	List(ctx context.Context) ([]Pod, error)
}

// PodWatcher is implemented by providers that push changes. A Manager whose
// provider implements it drops a deleted pod from its pool as soon as the
// event arrives instead of at its next reconciliation.
type PodWatcher interface {
	// Watch returns a channel of events that is closed when ctx is done
	// or when the watcher fell behind (the consumer then lists again).
	Watch(ctx context.Context) (<-chan PodEvent, error)
}

// PodEventType is the kind of a [PodEvent].
type PodEventType uint8

// The kinds of pod events.
const (
	// PodAdded reports a new pod.
	PodAdded PodEventType = iota + 1
	// PodDeleted reports a deleted pod.
	PodDeleted
)

// String returns "added" or "deleted".
func (t PodEventType) String() string {
	switch t {
	case PodAdded:
		return "added"
	case PodDeleted:
		return "deleted"
	default:
		return "unknown"
	}
}

// PodEvent is one change reported by a [PodWatcher].
type PodEvent struct {
	Type PodEventType
	Pod  Pod
}

// Errors of the package; test for them with errors.Is.
var (
	// ErrPodNotFound reports a pod the provider does not have.
	ErrPodNotFound = errors.New("warmpool: pod not found")
	// ErrPodExists reports a create whose name is taken.
	ErrPodExists = errors.New("warmpool: pod already exists")
	// ErrUnknownRuntime reports a Take for a runtime the Manager has no
	// pool for.
	ErrUnknownRuntime = errors.New("warmpool: unknown runtime")
	// ErrClosed reports a call on a closed Manager.
	ErrClosed = errors.New("warmpool: manager closed")
	// ErrNotIdle reports a pod whose agent answers the probe with a
	// function loaded: it is specialized, not a warm pod.
	ErrNotIdle = errors.New("warmpool: pod is not idle")
	// ErrSharedPopulation reports pods created by another manager in the
	// population of a manager whose lease store is private (the default):
	// with nobody to arbitrate, both could hand out the same pod. Such
	// pods are never adopted; managers that share a pod population must
	// share a LeaseStore and a Membership.
	ErrSharedPopulation = errors.New("warmpool: another manager shares this pod population, and the lease store is private")
)
