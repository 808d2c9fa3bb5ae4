package hostagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// Defaults of Config.
const (
	DefaultInterval         = 500 * time.Millisecond
	DefaultFailureThreshold = 2
	DefaultResync           = 10 * time.Second
	DefaultMaxConcurrent    = 32
)

// PodLister lists pods; every warmpool.PodProvider is one, and so is
// [FileLister]. A lister that also implements warmpool.PodWatcher is
// watched, so that a new pod is checked from its first round.
type PodLister interface {
	List(ctx context.Context) ([]warmpool.Pod, error)
}

// Pinger pings an agent's control listener; *lifecycle.Client is the
// default.
type Pinger interface {
	Ping(ctx context.Context, ctl lifecycle.Control) (lifecycle.PingResponse, error)
}

// Config configures an [Agent].
type Config struct {
	// Node is the host this agent runs on: it checks the pods whose
	// warmpool.Pod.Node it is, and publishes on its subject. Required.
	Node string
	// Pods lists the pods (of every node: the agent keeps its own).
	// Required.
	Pods PodLister
	// Conn is the connection to publish on; the caller owns it. Required.
	Conn *nats.Conn
	// Prefix is the subjects' prefix. Default health.DefaultPrefix.
	Prefix string
	// Interval is the time between two pings of each pod. Default 500 ms.
	Interval time.Duration
	// PingTimeout bounds one ping. Default: Interval.
	PingTimeout time.Duration
	// FailureThreshold is the number of failed pings in a row after which
	// a pod that was up is reported down. Default 2: one lost ping is
	// noise, two are a hung or dead agent (a second at the default
	// interval, against the six seconds of the dataplane's default pull
	// checks).
	FailureThreshold int
	// Heartbeat is the interval of heartbeats. Default
	// health.DefaultHeartbeat (1 s).
	Heartbeat time.Duration
	// Resync is the interval at which the pods are listed again (a
	// watcher's events are applied as they come). Default 10 s.
	Resync time.Duration
	// MaxConcurrentPings bounds the pings in flight. Default 32.
	MaxConcurrentPings int
	// Pinger pings the agents. Default: a lifecycle.Client with
	// PingTimeout.
	Pinger Pinger
	// Clock times the rounds, listings and heartbeats. Default: the
	// system clock.
	Clock clock.Clock
	// Logger receives verdict changes at info level and listing failures
	// at warn level. Default: discard.
	Logger *slog.Logger
}

// Agent is the host agent of one node: it learns the node's pods from its
// lister, pings each one's agent on its control listener every interval,
// and publishes the verdicts that change at once, plus heartbeats, through
// a health.Publisher.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	pub  *health.Publisher
	ping Pinger

	// pods is the node's pods and their checks; touched by Run's
	// goroutine only, and read by Pods under mu.
	mu   sync.Mutex
	pods map[string]*tracked
}

// tracked is one pod's checking state.
type tracked struct {
	pod      warmpool.Pod
	function string       // the function its agent served last
	assigned bool         // seen with a function (loading, loaded or ready)
	verdict  health.State // "" until the pod was ready, or failed after it was seen assigned
	fails    int
	reason   string
}

// PodStatus is an agent's view of one pod, for introspection.
type PodStatus struct {
	Pod      warmpool.Pod
	Function string
	// Verdict is "" while the pod's agent has never served a Ready
	// function (a warm pod, or one still loading).
	Verdict health.State
	// Fails counts the failed pings in a row.
	Fails  int
	Reason string
}

// ErrInvalidConfig is wrapped by the configuration errors of New.
var ErrInvalidConfig = errors.New("hostagent: invalid config")

// New validates cfg and returns an agent; it starts nothing.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Pods == nil:
		return nil, fmt.Errorf("%w: Pods is required", ErrInvalidConfig)
	case cfg.Interval < 0 || cfg.PingTimeout < 0 || cfg.FailureThreshold < 0 || cfg.Resync < 0 || cfg.MaxConcurrentPings < 0:
		return nil, fmt.Errorf("%w: durations and counts must not be negative", ErrInvalidConfig)
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.PingTimeout = cmp.Or(cfg.PingTimeout, cfg.Interval)
	cfg.FailureThreshold = cmp.Or(cfg.FailureThreshold, DefaultFailureThreshold)
	cfg.Resync = cmp.Or(cfg.Resync, DefaultResync)
	cfg.MaxConcurrentPings = cmp.Or(cfg.MaxConcurrentPings, DefaultMaxConcurrent)
	cfg.Clock = clock.Or(cfg.Clock)
	pub, err := health.NewPublisher(health.PublisherConfig{Conn: cfg.Conn, Node: cfg.Node, Prefix: cfg.Prefix,
		Heartbeat: cfg.Heartbeat, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Pinger == nil {
		c, err := lifecycle.NewClient(lifecycle.ClientConfig{PingTimeout: cfg.PingTimeout})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		cfg.Pinger = c
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, pub: pub, ping: cfg.Pinger, pods: map[string]*tracked{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("node", cfg.Node)
	return a, nil
}

// Publisher returns the agent's publisher (its verdicts and counters).
func (a *Agent) Publisher() *health.Publisher { return a.pub }

// Pods returns the agent's view of its node's pods, sorted by ID.
func (a *Agent) Pods() []PodStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]PodStatus, 0, len(a.pods))
	for _, id := range slices.Sorted(maps.Keys(a.pods)) {
		t := a.pods[id]
		out = append(out, PodStatus{Pod: t.pod.Clone(), Function: t.function, Verdict: t.verdict, Fails: t.fails, Reason: t.reason})
	}
	return out
}

// Run checks the node's pods and publishes their verdicts until ctx is
// done; then it returns ctx.Err(), once every goroutine it started has
// ended. It returns early with an error when the publisher fails (the
// connection closed).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	pubErr := make(chan error, 1)
	wg.Go(func() { pubErr <- a.pub.Run(ctx) })

	events := a.watch(ctx)
	a.relist(ctx)
	rounds := a.cfg.Clock.NewTicker(a.cfg.Interval)
	defer rounds.Stop()
	lists := a.cfg.Clock.NewTicker(a.cfg.Resync)
	defer lists.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pubErr:
			return fmt.Errorf("hostagent: %w", err)
		case ev, ok := <-events:
			if !ok {
				// The watcher fell behind (or ended): list, watch again.
				events = a.watch(ctx)
				a.relist(ctx)
				continue
			}
			a.apply(ev)
		case <-lists.C():
			a.relist(ctx)
		case <-rounds.C():
			a.round(ctx)
		}
	}
}

// watch subscribes to the lister's events, when it has any; a nil channel
// (never ready) otherwise.
func (a *Agent) watch(ctx context.Context) <-chan warmpool.PodEvent {
	w, ok := a.cfg.Pods.(warmpool.PodWatcher)
	if !ok || ctx.Err() != nil {
		return nil
	}
	ch, err := w.Watch(ctx)
	if err != nil {
		a.log.Warn("hostagent: watching pods failed; listing every resync", "err", err)
		return nil
	}
	return ch
}

// relist replaces the pod set with the lister's pods of this node.
func (a *Agent) relist(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, a.cfg.Resync)
	defer cancel()
	pods, err := a.cfg.Pods.List(lctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("hostagent: listing pods failed; keeping the pods known", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, p := range pods {
		if p.Node == a.cfg.Node {
			seen[p.ID] = true
			a.add(p)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(a.pods)) {
		if !seen[id] {
			a.gone(id)
		}
	}
}

func (a *Agent) apply(ev warmpool.PodEvent) {
	if ev.Pod.Node != a.cfg.Node {
		return
	}
	switch ev.Type {
	case warmpool.PodAdded:
		a.add(ev.Pod)
	case warmpool.PodDeleted:
		a.gone(ev.Pod.ID)
	}
}

func (a *Agent) add(p warmpool.Pod) {
	if !health.ValidName(p.ID) {
		a.log.Warn("hostagent: pod with an invalid ID ignored", "pod", p.ID)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.pods[p.ID]; ok {
		t.pod = p // the address may have been filled in
		return
	}
	a.pods[p.ID] = &tracked{pod: p}
}

// gone drops a pod that left the node. One that served a function is
// reported exited: its instance, if the dataplane still routes it, is
// dead (a dataplane drains an instance before it deletes its pod, so a
// pod it deleted itself is no longer routed).
func (a *Agent) gone(id string) {
	a.mu.Lock()
	t := a.pods[id]
	delete(a.pods, id)
	a.mu.Unlock()
	if t == nil {
		return
	}
	if t.verdict == health.StateUp || t.verdict == health.StateDown {
		a.log.Info("hostagent: pod gone", "pod", id, "function", t.function)
		if err := a.pub.Update(health.PodStatus{Pod: id, Function: t.function, State: health.StateExited, Reason: "pod deleted"}); err != nil {
			a.log.Warn("hostagent: publishing failed", "err", err)
		}
	}
	a.pub.Forget(id)
}

// round pings every pod that can still change, at most
// MaxConcurrentPings at once, and publishes the changes in one message.
func (a *Agent) round(ctx context.Context) {
	a.mu.Lock()
	var due []*tracked
	for _, id := range slices.Sorted(maps.Keys(a.pods)) {
		t := a.pods[id]
		if t.verdict != health.StateExited && t.verdict != health.StateReassigned && t.pod.Control.Addr != "" {
			due = append(due, t)
		}
	}
	a.mu.Unlock()
	results := make([]error, len(due))
	answers := make([]lifecycle.PingResponse, len(due))
	sem := make(chan struct{}, a.cfg.MaxConcurrentPings)
	var wg sync.WaitGroup
	for i, t := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, a.cfg.PingTimeout)
			defer cancel()
			answers[i], results[i] = a.ping.Ping(pctx, t.pod.Control)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: the pings were cut short, not failed
	}
	var changes []health.PodStatus
	a.mu.Lock()
	for i, t := range due {
		if a.pods[t.pod.ID] != t {
			continue // gone meanwhile
		}
		was := t.verdict
		judge(t, answers[i], results[i], a.cfg.FailureThreshold)
		if t.verdict != was && t.verdict != "" {
			changes = append(changes, health.PodStatus{Pod: t.pod.ID, Function: t.function, State: t.verdict, Reason: t.reason})
		}
	}
	a.mu.Unlock()
	for _, c := range changes {
		a.log.Info("hostagent: verdict changed", "pod", c.Pod, "function", c.Function, "state", c.State, "reason", c.Reason)
	}
	if len(changes) > 0 {
		if err := a.pub.Update(changes...); err != nil {
			a.log.Warn("hostagent: publishing failed", "err", err)
		}
	}
}

// judge updates t's verdict from one ping's answer. The rules:
//
//   - ready, for the function t served (or its first): up;
//   - ready for another function, or no_function / instance_reassigned
//     after t served one: reassigned (a warm pod answering no_function is
//     no instance: no verdict);
//   - function_exited: exited;
//   - unauthorized: the agent's configuration is wrong (the pod's token),
//     not the pod: no change;
//   - loading (not_ready) or loaded: the pod is being specialized, which
//     is no failure until it was ready once;
//   - anything else (a timeout, a refused connection, another error): a
//     failure; after threshold failures in a row a pod that was ready, or
//     seen being specialized (its instance may have become Ready between
//     two pings), is down. A pod never seen with a function gets no
//     verdict: it is a warm pod, which the dataplane does not route.
func judge(t *tracked, resp lifecycle.PingResponse, err error, threshold int) {
	switch {
	case err == nil && resp.State == lifecycle.AgentReady:
		if t.function != "" && resp.FunctionID != t.function {
			t.verdict, t.reason = health.StateReassigned, "agent serves function "+resp.FunctionID+" now"
			return
		}
		t.function, t.assigned, t.verdict, t.fails, t.reason = resp.FunctionID, true, health.StateUp, 0, "ping ok"
		return
	case errors.Is(err, lifecycle.CodeFunctionExited):
		t.verdict, t.reason = health.StateExited, err.Error()
		return
	case errors.Is(err, lifecycle.CodeNoFunction) || errors.Is(err, lifecycle.CodeInstanceReassigned):
		if t.assigned || t.verdict != "" {
			t.verdict, t.reason = health.StateReassigned, err.Error()
		}
		return
	case errors.Is(err, lifecycle.CodeUnauthorized):
		t.reason = err.Error()
		return
	case err == nil || errors.Is(err, lifecycle.CodeNotReady):
		if err == nil && resp.FunctionID != "" && t.function == "" {
			t.function = resp.FunctionID
		}
		if t.verdict == "" {
			t.assigned = true // loading or loaded: not ready yet
			return
		}
	case t.verdict == "" && !t.assigned:
		return // a warm pod, unreachable: no instance of it is routed
	}
	t.fails++
	if err == nil {
		t.reason = "agent state " + resp.State
	} else {
		t.reason = err.Error()
	}
	if t.fails >= threshold {
		t.verdict = health.StateDown
		t.reason = fmt.Sprintf("%d pings failed: %s", t.fails, strings.TrimSpace(t.reason))
	}
}
