package faastest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/faasplane/faas/warmpool"
)

// podStoreConfig configures a [podStore].
type podStoreConfig struct {
	// Nodes are the nodes new pods are placed on, round robin. Default
	// {"node-0"}.
	Nodes []string
	// Addr returns the agent address of a new pod (ID, Node and Runtime
	// are set). Default: "<ID>.invalid:8080", an address that never
	// resolves, for pods that are never dialled: a Manager over such pods
	// needs probing disabled (Config.ProbeInterval < 0) or a fake Prober.
	Addr func(p warmpool.Pod) string
	// Now stamps warmpool.Pod.Created. Default time.Now.
	Now func() time.Time
}

// podStore is an in-memory [warmpool.PodProvider] and [warmpool.PodWatcher]: Create
// records a pod and returns it at once, Delete forgets it. No process runs
// behind its pods unless the caller starts agents at the addresses its Addr
// function gives (or adds pods for agents it started with
// [podStore.Add]). It serves tests and examples; it is safe for
// concurrent use.
type podStore struct {
	cfg podStoreConfig

	mu       sync.Mutex
	pods     map[string]warmpool.Pod
	seq      int
	watchers map[chan warmpool.PodEvent]struct{}
}

// watchBuffer is how many events a watcher may fall behind before its
// channel is closed.
const watchBuffer = 256

// newPodStore returns a provider holding pods.
func newPodStore(cfg podStoreConfig, pods ...warmpool.Pod) (*podStore, error) {
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []string{"node-0"}
	}
	if cfg.Addr == nil {
		cfg.Addr = func(p warmpool.Pod) string { return p.ID + ".invalid:8080" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &podStore{cfg: cfg, pods: make(map[string]warmpool.Pod), watchers: make(map[chan warmpool.PodEvent]struct{})}
	if err := p.Add(pods...); err != nil {
		return nil, err
	}
	return p, nil
}

// Add records existing pods, e.g. agents started by hand. A pod needs an ID,
// an address and a runtime; an ID already present is an error wrapping
// warmpool.ErrPodExists, and then no pod is added.
func (p *podStore) Add(pods ...warmpool.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, pod := range pods {
		if pod.ID == "" || pod.Addr == "" || pod.Runtime == "" {
			return fmt.Errorf("warmpool: static pod %q needs an ID, an address and a runtime", pod.ID)
		}
		if _, ok := p.pods[pod.ID]; ok || seen[pod.ID] {
			return fmt.Errorf("warmpool: static pod %q: %w", pod.ID, warmpool.ErrPodExists)
		}
		seen[pod.ID] = true
	}
	for _, pod := range pods {
		pod = pod.Clone()
		p.pods[pod.ID] = pod
		p.notifyLocked(warmpool.PodEvent{Type: warmpool.PodAdded, Pod: pod})
	}
	return nil
}

// Create records a new pod named spec.Name (or "pod-<n>" when the name is
// empty) on the next node.
func (p *podStore) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	if err := ctx.Err(); err != nil {
		return warmpool.Pod{}, err
	}
	if spec.Runtime == "" {
		return warmpool.Pod{}, fmt.Errorf("warmpool: static create: empty runtime")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id := spec.Name
	if id == "" {
		for {
			p.seq++
			id = "pod-" + strconv.Itoa(p.seq)
			if _, ok := p.pods[id]; !ok {
				break
			}
		}
	} else if _, ok := p.pods[id]; ok {
		return warmpool.Pod{}, fmt.Errorf("warmpool: static create %q: %w", id, warmpool.ErrPodExists)
	}
	node := p.cfg.Nodes[len(p.pods)%len(p.cfg.Nodes)]
	pod := warmpool.Pod{ID: id, Node: node, Runtime: spec.Runtime, Labels: maps.Clone(spec.Labels), Created: p.cfg.Now()}
	pod.Addr = p.cfg.Addr(pod)
	p.pods[id] = pod
	p.notifyLocked(warmpool.PodEvent{Type: warmpool.PodAdded, Pod: pod.Clone()})
	return pod.Clone(), nil
}

// Delete forgets the pod.
func (p *podStore) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[id]
	if !ok {
		return fmt.Errorf("warmpool: static delete %q: %w", id, warmpool.ErrPodNotFound)
	}
	delete(p.pods, id)
	p.notifyLocked(warmpool.PodEvent{Type: warmpool.PodDeleted, Pod: pod})
	return nil
}

// List returns the pods sorted by ID.
func (p *podStore) List(ctx context.Context) ([]warmpool.Pod, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	out := make([]warmpool.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.Clone())
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b warmpool.Pod) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Get returns the pod with the given ID.
func (p *podStore) Get(id string) (warmpool.Pod, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[id]
	return pod.Clone(), ok
}

// Len returns the number of pods.
func (p *podStore) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pods)
}

// Watch returns a channel of the changes after this call. It is closed
// when ctx is done, or when the consumer falls more than 256 events behind.
func (p *podStore) Watch(ctx context.Context) (<-chan warmpool.PodEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan warmpool.PodEvent, watchBuffer)
	p.mu.Lock()
	p.watchers[ch] = struct{}{}
	p.mu.Unlock()
	// context.AfterFunc runs in its own goroutine only once ctx is done,
	// and it is the only closer besides notifyLocked, under the same lock.
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.watchers[ch]; ok {
			delete(p.watchers, ch)
			close(ch)
		}
	})
	return ch, nil
}

func (p *podStore) notifyLocked(ev warmpool.PodEvent) {
	for ch := range p.watchers {
		select {
		case ch <- ev:
		default:
			delete(p.watchers, ch)
			close(ch)
		}
	}
}
