package warmpool

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// staticConfig configures a [StaticProvider].
type staticConfig struct {
	// Nodes are the nodes new pods are placed on, round robin. Default
	// {"node-0"}.
	Nodes []string
	// Addr returns the agent address of a new pod (ID, Node and Runtime
	// are set). Default: "<ID>.invalid:8080", an address that never
	// resolves, for pods that are never dialled: a Manager over such pods
	// needs probing disabled (Config.ProbeInterval < 0) or a fake Prober.
	Addr func(p Pod) string
	// Now stamps Pod.Created. Default time.Now.
	Now func() time.Time
}

// staticProvider is an in-memory [PodProvider] and [PodWatcher]: Create
// records a pod and returns it at once, Delete forgets it. No process runs
// behind its pods unless the caller starts agents at the addresses its Addr
// function gives (or adds pods for agents it started with
// [StaticProvider.Add]). It serves tests and examples; it is safe for
// concurrent use.
type staticProvider struct {
	cfg staticConfig

	mu       sync.Mutex
	pods     map[string]Pod
	seq      int
	watchers map[chan PodEvent]struct{}
}

// watchBuffer is how many events a watcher may fall behind before its
// channel is closed.
const watchBuffer = 256

// newStaticProvider returns a provider holding pods.
func newStaticProvider(cfg staticConfig, pods ...Pod) (*staticProvider, error) {
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []string{"node-0"}
	}
	if cfg.Addr == nil {
		cfg.Addr = func(p Pod) string { return p.ID + ".invalid:8080" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &staticProvider{cfg: cfg, pods: make(map[string]Pod), watchers: make(map[chan PodEvent]struct{})}
	if err := p.Add(pods...); err != nil {
		return nil, err
	}
	return p, nil
}

// Add records existing pods, e.g. agents started by hand. A pod needs an ID,
// an address and a runtime; an ID already present is an error wrapping
// ErrPodExists, and then no pod is added.
func (p *staticProvider) Add(pods ...Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, pod := range pods {
		if pod.ID == "" || pod.Addr == "" || pod.Runtime == "" {
			return fmt.Errorf("warmpool: static pod %q needs an ID, an address and a runtime", pod.ID)
		}
		if _, ok := p.pods[pod.ID]; ok || seen[pod.ID] {
			return fmt.Errorf("warmpool: static pod %q: %w", pod.ID, ErrPodExists)
		}
		seen[pod.ID] = true
	}
	for _, pod := range pods {
		pod = pod.Clone()
		p.pods[pod.ID] = pod
		p.notifyLocked(PodEvent{Type: PodAdded, Pod: pod})
	}
	return nil
}

// Create records a new pod named spec.Name (or "pod-<n>" when the name is
// empty) on the next node.
func (p *staticProvider) Create(ctx context.Context, spec PodSpec) (Pod, error) {
	if err := ctx.Err(); err != nil {
		return Pod{}, err
	}
	if spec.Runtime == "" {
		return Pod{}, fmt.Errorf("warmpool: static create: empty runtime")
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
		return Pod{}, fmt.Errorf("warmpool: static create %q: %w", id, ErrPodExists)
	}
	node := p.cfg.Nodes[len(p.pods)%len(p.cfg.Nodes)]
	pod := Pod{ID: id, Node: node, Runtime: spec.Runtime, Labels: maps.Clone(spec.Labels), Created: p.cfg.Now()}
	pod.Addr = p.cfg.Addr(pod)
	p.pods[id] = pod
	p.notifyLocked(PodEvent{Type: PodAdded, Pod: pod.Clone()})
	return pod.Clone(), nil
}

// Delete forgets the pod.
func (p *staticProvider) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[id]
	if !ok {
		return fmt.Errorf("warmpool: static delete %q: %w", id, ErrPodNotFound)
	}
	delete(p.pods, id)
	p.notifyLocked(PodEvent{Type: PodDeleted, Pod: pod})
	return nil
}

// List returns the pods sorted by ID.
func (p *staticProvider) List(ctx context.Context) ([]Pod, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	out := make([]Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.Clone())
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Pod) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Get returns the pod with the given ID.
func (p *staticProvider) Get(id string) (Pod, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[id]
	return pod.Clone(), ok
}

// Len returns the number of pods.
func (p *staticProvider) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pods)
}

// Watch returns a channel of the changes after this call. It is closed
// when ctx is done, or when the consumer falls more than 256 events behind.
func (p *staticProvider) Watch(ctx context.Context) (<-chan PodEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan PodEvent, watchBuffer)
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

func (p *staticProvider) notifyLocked(ev PodEvent) {
	for ch := range p.watchers {
		select {
		case ch <- ev:
		default:
			delete(p.watchers, ch)
			close(ch)
		}
	}
}
