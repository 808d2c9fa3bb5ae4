package faastest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// ErrInjected is matched (errors.Is) by every failure a fake injects, so
// that a test can tell an injected failure from a bug.
var ErrInjected = errors.New("faastest: injected failure")

// PodProviderConfig configures a [PodProvider]. The zero value is valid:
// pods are created at once on "node-0" and never fail.
type PodProviderConfig struct {
	// Nodes are the nodes new pods are placed on, round robin, unless
	// Place is set. Default {"node-0"}.
	Nodes []string
	// Place, when set, chooses the node of the n-th created pod (n counts
	// from 0), e.g. to put every pod of a test on one node.
	Place func(spec warmpool.PodSpec, n int) string
	// Latency is the creation latency: Create waits for a sample of it
	// before it answers. Default none.
	Latency Dist
	// FailRate is the probability that a Create fails, after its latency,
	// with an error wrapping ErrInjected. Default 0.
	FailRate float64
	// Clock, when set, is the clock Create waits on (tests advance it);
	// nil waits in real time. Pods are stamped with its time either way
	// (time.Now without a clock).
	Clock *Clock
	// Seed seeds the latency samples and the failures.
	Seed uint64
	// Addr returns the invocation address of a new pod. Default
	// "<ID>.invalid:8080", an address that never resolves.
	Addr func(p warmpool.Pod) string
	// Control returns the control endpoint of a new pod (its Addr is
	// set). Default "<ID>.invalid:8081" with a token derived from the ID,
	// so that a simulation replays the same pods.
	Control func(p warmpool.Pod) lifecycle.Control
}

// PodStats counts a [PodProvider]'s activity.
type PodStats struct {
	// Created counts the pods created, Failed the creations that failed
	// (injected), Deleted the pods deleted through Delete, Crashed the
	// pods crashed with Crash. Live is the number of pods now.
	Created, Failed, Deleted, Crashed, Live int
}

// PodProvider is a fake warmpool.PodProvider, PodWatcher and Prober for
// tests: creations take a latency drawn from a distribution (on a fake or a
// real clock), fail at a given rate or on demand, land on nodes round robin
// or where a function says, and pods can be crashed, which deletes them,
// tells watchers, and makes their probe fail. Pods are stored in
// an in-memory store, so listing and watching behave exactly as
// there. It is safe for concurrent use.
type PodProvider struct {
	cfg    PodProviderConfig
	static *podStore

	mu       sync.Mutex
	rng      *rand.Rand
	n        int // creations asked for
	failNext int
	crashed  map[string]bool
	stats    PodStats
}

// NewPodProvider returns a fake provider holding no pods.
func NewPodProvider(cfg PodProviderConfig) *PodProvider {
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []string{"node-0"}
	}
	if cfg.Addr == nil {
		cfg.Addr = func(p warmpool.Pod) string { return p.ID + ".invalid:8080" }
	}
	if cfg.Control == nil {
		cfg.Control = func(p warmpool.Pod) lifecycle.Control {
			return lifecycle.Control{Addr: p.ID + ".invalid:8081", Token: "faastest-control-" + p.ID}
		}
	}
	now := time.Now
	if cfg.Clock != nil {
		now = cfg.Clock.Now
	}
	// A pod store with valid defaults never fails to build.
	static, _ := newPodStore(podStoreConfig{Nodes: cfg.Nodes, Addr: cfg.Addr, Now: now})
	return &PodProvider{cfg: cfg, static: static, rng: newRand(cfg.Seed), crashed: make(map[string]bool)}
}

func (p *PodProvider) now() time.Time {
	if p.cfg.Clock != nil {
		return p.cfg.Clock.Now()
	}
	return time.Now()
}

// Create waits for the creation latency (or until ctx is done), then
// either fails with an error wrapping ErrInjected or records a pod named
// spec.Name ("pod-<n>" when empty) on the chosen node.
func (p *PodProvider) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	if spec.Runtime == "" {
		return warmpool.Pod{}, errors.New("faastest: create needs a runtime")
	}
	if _, taken := p.static.Get(spec.Name); taken && spec.Name != "" {
		// A real provider refuses a taken name at once.
		return warmpool.Pod{}, fmt.Errorf("faastest: create %q: %w", spec.Name, warmpool.ErrPodExists)
	}
	p.mu.Lock()
	n := p.n
	p.n++
	latency := sample(p.cfg.Latency, p.rng)
	fail := p.failNext > 0 || (p.cfg.FailRate > 0 && p.rng.Float64() < p.cfg.FailRate)
	if p.failNext > 0 {
		p.failNext--
	}
	node := p.cfg.Nodes[n%len(p.cfg.Nodes)]
	if p.cfg.Place != nil {
		node = p.cfg.Place(spec, n)
	}
	p.mu.Unlock()
	if err := wait(ctx, p.cfg.Clock, latency); err != nil {
		return warmpool.Pod{}, err
	}
	if fail {
		p.mu.Lock()
		p.stats.Failed++
		p.mu.Unlock()
		return warmpool.Pod{}, fmt.Errorf("faastest: create pod for %s: %w", spec.Runtime, ErrInjected)
	}
	id := spec.Name
	if id == "" {
		id = fmt.Sprintf("pod-%d", n)
	}
	pod := warmpool.Pod{ID: id, Node: node, Runtime: spec.Runtime, Labels: maps.Clone(spec.Labels), Created: p.now()}
	pod.Addr = p.cfg.Addr(pod)
	pod.Control = p.cfg.Control(pod)
	if err := p.static.Add(pod); err != nil {
		return warmpool.Pod{}, err
	}
	p.mu.Lock()
	p.stats.Created++
	p.mu.Unlock()
	return pod.Clone(), nil
}

// wait waits d on clock (real time when clock is nil), or until ctx is
// done.
func wait(ctx context.Context, clock *Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if clock != nil {
		return clock.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete deletes the pod; an unknown (or crashed) pod is an error wrapping
// warmpool.ErrPodNotFound.
func (p *PodProvider) Delete(ctx context.Context, id string) error {
	if err := p.static.Delete(ctx, id); err != nil {
		return err
	}
	p.mu.Lock()
	p.stats.Deleted++
	p.mu.Unlock()
	return nil
}

// List returns the live pods sorted by ID.
func (p *PodProvider) List(ctx context.Context) ([]warmpool.Pod, error) {
	return p.static.List(ctx)
}

// Watch returns a channel of pod events after this call (creations,
// deletions and crashes). It is closed when ctx is done or when the
// consumer falls more than 256 events behind.
func (p *PodProvider) Watch(ctx context.Context) (<-chan warmpool.PodEvent, error) {
	return p.static.Watch(ctx)
}

// Get returns the live pod with the given ID.
func (p *PodProvider) Get(id string) (warmpool.Pod, bool) { return p.static.Get(id) }

// Add records existing pods (agents started by hand): a pod needs an ID, an
// address and a runtime; an ID already present is an error wrapping
// warmpool.ErrPodExists, and then no pod is added.
func (p *PodProvider) Add(pods ...warmpool.Pod) error { return p.static.Add(pods...) }

// Crash makes the pod disappear as if its sandbox died: it is deleted,
// watchers receive a PodDeleted event, and Probe reports it dead. It
// returns an error wrapping warmpool.ErrPodNotFound for an unknown pod.
func (p *PodProvider) Crash(id string) error {
	if err := p.static.Delete(context.Background(), id); err != nil {
		return err
	}
	p.mu.Lock()
	p.crashed[id] = true
	p.stats.Crashed++
	p.mu.Unlock()
	return nil
}

// FailNext makes the next n creations fail (after their latency) with an
// error wrapping ErrInjected, whatever FailRate says.
func (p *PodProvider) FailNext(n int) {
	p.mu.Lock()
	p.failNext = max(n, 0)
	p.mu.Unlock()
}

// Probe implements warmpool.Prober without any network: a live pod is an
// idle generic pod (nil), a crashed one fails with an error wrapping
// ErrInjected, and an unknown one with warmpool.ErrPodNotFound.
func (p *PodProvider) Probe(ctx context.Context, pod warmpool.Pod) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := p.static.Get(pod.ID); ok {
		return nil
	}
	p.mu.Lock()
	crashed := p.crashed[pod.ID]
	p.mu.Unlock()
	if crashed {
		return fmt.Errorf("faastest: pod %s crashed: %w", pod.ID, ErrInjected)
	}
	return fmt.Errorf("faastest: probe %s: %w", pod.ID, warmpool.ErrPodNotFound)
}

// Stats returns the provider's counters.
func (p *PodProvider) Stats() PodStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Live = p.static.Len()
	return s
}

var (
	_ warmpool.PodProvider = (*PodProvider)(nil)
	_ warmpool.PodWatcher  = (*PodProvider)(nil)
	_ warmpool.Prober      = (*PodProvider)(nil)
)
