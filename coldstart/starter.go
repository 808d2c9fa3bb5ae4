package coldstart

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"golang.org/x/sync/semaphore"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// Pool hands out warm pods and deletes them. [*warmpool.Manager] implements
// it.
type Pool interface {
	// Take returns an idle pod of runtime, preferring what pref scores
	// highest, waiting bounded by ctx when none is idle.
	Take(ctx context.Context, runtime string, pref warmpool.Preference) (warmpool.Pod, error)
	// Delete deletes a pod taken from the pool.
	Delete(ctx context.Context, pod warmpool.Pod) error
}

// AgentClient calls the control protocol of a pod's agent, at the pod's
// [lifecycle.Control]. [*lifecycle.Client] implements it.
type AgentClient interface {
	Load(ctx context.Context, ctl lifecycle.Control, req lifecycle.LoadRequest) (lifecycle.LoadResponse, error)
	Initialize(ctx context.Context, ctl lifecycle.Control, req lifecycle.InitializeRequest) (lifecycle.InitializeResponse, error)
}

// Locality tells which nodes hold a code package in their cache, so that a
// cold start prefers a pod on such a node. It is called while the pool is
// locked, once per idle pod: it must be fast and must not block (read a
// snapshot, e.g. of the digests the nodes' caches report).
type Locality interface {
	HasCode(node, digest string) bool
}

// LocalityFunc adapts a function to [Locality].
type LocalityFunc func(node, digest string) bool

// HasCode calls f(node, digest).
func (f LocalityFunc) HasCode(node, digest string) bool { return f(node, digest) }

// Defaults of [Config], and of a [Function] that sets no init timeout or
// attempts.
const (
	DefaultMaxConcurrent  = 64
	DefaultQueueTimeout   = 30 * time.Second
	DefaultTakeTimeout    = 30 * time.Second
	DefaultLoadTimeout    = 60 * time.Second
	DefaultInitTimeout    = 30 * time.Second
	DefaultInitAttempts   = 3
	DefaultInitRetryDelay = 100 * time.Millisecond
	DefaultDeleteTimeout  = 30 * time.Second
)

// Config tunes a [Starter]. The zero value is valid: every zero field takes
// its default. How long a function's init hook may take, and how often it
// is tried, belong to the function ([Function.InitTimeout],
// [Function.InitAttempts]), not to the Starter.
type Config struct {
	// Locality, when set, makes cold starts prefer pods on nodes that
	// cache the function's code.
	Locality Locality
	// MaxConcurrent caps the cold starts in flight, all functions
	// together, so that a burst of many functions cannot exhaust the
	// pool, the code stores or the nodes at once. Default 64.
	MaxConcurrent int
	// QueueTimeout bounds the wait for a slot under MaxConcurrent.
	// Default 30 seconds.
	QueueTimeout time.Duration
	// TakeTimeout bounds the wait for a warm pod. Default 30 seconds.
	TakeTimeout time.Duration
	// LoadTimeout bounds POST /v1/load (fetch, unpack, process start).
	// Default 60 seconds.
	LoadTimeout time.Duration
	// InitRetryDelay is the wait before the second call of the init hook;
	// it doubles for each further call. It is paid only after a failure.
	// Default 100 ms; negative means no wait.
	InitRetryDelay time.Duration
	// DeleteTimeout bounds the deletion of the pod of a failed cold start.
	// Default 30 seconds.
	DeleteTimeout time.Duration
	// Clock times the breakdowns and transitions and the waits between
	// init attempts. Default: the system clock.
	Clock clock.Clock
	// Logger receives warnings (pods that could not be deleted). nil
	// discards them.
	Logger *slog.Logger
}

// Hooks are what a [Starter] tells its owner.
type Hooks struct {
	// Observers receive the state transitions of every instance the
	// Starter creates (the router adds an instance to its routes when it
	// becomes Ready).
	Observers []lifecycle.Observer
	// OnColdStart, when set, receives the report of every cold start,
	// successful or not, synchronously at its end; it must be fast.
	OnColdStart func(Report)
}

// Report describes one cold start.
type Report struct {
	FunctionID string
	Generation uint64
	// Dedicated reports a cold start on a pod created for the function
	// (StartDedicated).
	Dedicated bool
	// InstanceID, PodID and Node are empty when no pod was taken.
	InstanceID string
	PodID      string
	Node       string
	Breakdown  Breakdown
	// Err is nil for a cold start that reached Ready, a *StepError
	// otherwise.
	Err error
}

// Result is a successful cold start: an instance in state Ready.
type Result struct {
	Instance  *lifecycle.Instance
	Pod       warmpool.Pod
	Breakdown Breakdown
}

// Starter runs cold starts: take a warm pod, load the function into it,
// initialize it, and hand back a Ready instance. It is safe for concurrent
// use; Close stops the cold starts it runs on its own (see [Starter.Ensure]).
type Starter struct {
	cfg   Config
	pool  Pool
	agent AgentClient
	hooks Hooks
	clock clock.Clock
	log   *slog.Logger
	sem   *semaphore.Weighted

	ctx    context.Context // of the cold starts Ensure runs
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	flights map[flightKey][]*flight
}

// New returns a Starter that takes pods from pool and drives their agents
// through agent, tuned by cfg, reporting to hooks. It fails on a nil pool
// or agent and on negative limits or timeouts.
func New(pool Pool, agent AgentClient, cfg Config, hooks Hooks) (*Starter, error) {
	if pool == nil || agent == nil {
		return nil, errors.New("coldstart: a Pool and an AgentClient are required")
	}
	if cfg.MaxConcurrent < 0 || cfg.QueueTimeout < 0 || cfg.TakeTimeout < 0 || cfg.LoadTimeout < 0 || cfg.DeleteTimeout < 0 {
		return nil, errors.New("coldstart: Config limits and timeouts must not be negative")
	}
	cfg.MaxConcurrent = cmp.Or(cfg.MaxConcurrent, DefaultMaxConcurrent)
	cfg.QueueTimeout = cmp.Or(cfg.QueueTimeout, DefaultQueueTimeout)
	cfg.TakeTimeout = cmp.Or(cfg.TakeTimeout, DefaultTakeTimeout)
	cfg.LoadTimeout = cmp.Or(cfg.LoadTimeout, DefaultLoadTimeout)
	cfg.InitRetryDelay = max(cmp.Or(cfg.InitRetryDelay, DefaultInitRetryDelay), 0)
	cfg.DeleteTimeout = cmp.Or(cfg.DeleteTimeout, DefaultDeleteTimeout)
	s := &Starter{cfg: cfg, pool: pool, agent: agent, hooks: hooks, clock: clock.Or(cfg.Clock), log: cfg.Logger,
		sem: semaphore.NewWeighted(int64(cfg.MaxConcurrent)), flights: make(map[flightKey][]*flight)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start runs one cold start of fn in the calling goroutine, bounded by ctx
// and by the per-step timeouts, and returns the Ready instance. It does not
// collapse with other cold starts (see [Starter.Ensure] for that). On
// failure it returns a *StepError naming the failed step, after deleting
// the pod it took, if any; an invalid fn fails with ErrInvalidFunction
// before any pod is taken.
func (s *Starter) Start(ctx context.Context, fn Function) (Result, error) {
	if err := fn.Validate(); err != nil {
		return Result{}, err
	}
	if s.isClosed() {
		return Result{}, ErrClosed
	}
	return s.run(ctx, &fn, s.fromPool(&fn))
}

// Creator creates and deletes pods: a [warmpool.PodProvider] does.
type Creator interface {
	Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error)
	Delete(ctx context.Context, id string) error
}

// StartDedicated runs one cold start of fn, as Start does, on a pod that
// pods creates for it (a steady instance: [warmpool.FunctionPod]) instead
// of one taken from the warm pool; the instance's Info.Dedicated is set,
// and the pod is deleted through pods if the cold start fails. Its Take
// step is the pod's creation.
func (s *Starter) StartDedicated(ctx context.Context, pods Creator, fn Function) (Result, error) {
	if pods == nil {
		return Result{}, errors.New("coldstart: StartDedicated needs a Creator")
	}
	if err := fn.Validate(); err != nil {
		return Result{}, err
	}
	if s.isClosed() {
		return Result{}, ErrClosed
	}
	return s.run(ctx, &fn, s.dedicated(&fn, pods))
}

// podSource is where a cold start gets its pod, and how it gives it back
// when the cold start fails.
type podSource struct {
	get       func(ctx context.Context) (warmpool.Pod, error)
	discard   func(ctx context.Context, pod warmpool.Pod) error
	dedicated bool
}

func (s *Starter) fromPool(fn *Function) podSource {
	return podSource{
		get: func(ctx context.Context) (warmpool.Pod, error) {
			return s.pool.Take(ctx, fn.Runtime, s.preference(fn.Code.Digest))
		},
		discard: s.pool.Delete,
	}
}

func (s *Starter) dedicated(fn *Function, pods Creator) podSource {
	return podSource{
		get: func(ctx context.Context) (warmpool.Pod, error) {
			return pods.Create(ctx, warmpool.PodSpec{
				Name:     DedicatedPodName(fn.ID),
				Runtime:  fn.Runtime,
				Labels:   map[string]string{warmpool.FunctionLabel: labelValue(fn.ID)},
				Function: &warmpool.FunctionPod{FunctionID: fn.ID, Generation: fn.Generation, Limits: fn.Limits},
			})
		},
		discard:   func(ctx context.Context, pod warmpool.Pod) error { return pods.Delete(ctx, pod.ID) },
		dedicated: true,
	}
}

// DedicatedPodName returns a fresh name for a pod dedicated to the
// function: "steady-", the function's ID made a DNS label (lower case
// letters, digits and '-', at most 40 bytes), and a random suffix.
func DedicatedPodName(functionID string) string {
	var b strings.Builder
	b.WriteString("steady-")
	for i := 0; i < len(functionID) && b.Len() < 47; i++ {
		switch c := functionID[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte('-')
		}
	}
	return strings.TrimRight(b.String(), "-") + "-" + strconv.FormatUint(rand.Uint64()>>24, 36)
}

// labelValue makes a function ID a valid Kubernetes label value: at most
// 63 bytes of letters, digits, '-', '_' and '.', starting and ending with
// an alphanumeric.
func labelValue(id string) string {
	b := []byte(id[:min(len(id), 63)])
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	out := strings.Trim(string(b), "-_.")
	if out == "" {
		return "function"
	}
	return out
}

func (s *Starter) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// run is one cold start, on a pod from src.
func (s *Starter) run(ctx context.Context, fn *Function, src podSource) (res Result, err error) {
	now := s.clock.Now
	start := now()
	var b Breakdown
	var pod warmpool.Pod
	var inst *lifecycle.Instance
	defer func() {
		b.Total = now().Sub(start)
		res.Breakdown = b
		if s.hooks.OnColdStart != nil {
			r := Report{FunctionID: fn.ID, Generation: fn.Generation, PodID: pod.ID, Node: pod.Node, Breakdown: b, Err: err, Dedicated: src.dedicated}
			if inst != nil {
				r.InstanceID = inst.ID
			}
			s.hooks.OnColdStart(r)
		}
	}()

	// Queue: a slot under the global cap (no timer when one is free).
	if !s.sem.TryAcquire(1) {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.QueueTimeout)
		err = s.sem.Acquire(qctx, 1)
		cancel()
		if err != nil {
			return res, &StepError{Step: StepQueue, FunctionID: fn.ID, Err: err}
		}
	}
	defer s.sem.Release(1)
	t := now()
	b.Queue = t.Sub(start)
	lap := func() time.Duration { // the time since the last lap
		n := now()
		d := n.Sub(t)
		t = n
		return d
	}

	// Take: a warm pod, on a node that has the code if possible (or a
	// pod created for the function).
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TakeTimeout)
	pod, err = src.get(tctx)
	cancel()
	b.Take = lap()
	if err != nil {
		return res, &StepError{Step: StepTake, FunctionID: fn.ID, Err: err}
	}
	inst = lifecycle.NewInstance(lifecycle.Info{
		ID: InstanceID(pod.ID), FunctionID: fn.ID, PodID: pod.ID, Node: pod.Node, Addr: pod.Addr, Control: pod.Control, Runtime: pod.Runtime,
		Generation: fn.Generation, Dedicated: src.dedicated,
	}, t, s.hooks.Observers...)
	fail := func(step Step, attempts int, cause error) (Result, error) {
		_ = inst.Transition(now(), lifecycle.Failed, string(step)+" failed")
		s.deletePod(ctx, src, pod)
		return Result{}, &StepError{Step: step, FunctionID: fn.ID, PodID: pod.ID, Attempts: attempts, Err: cause}
	}

	// Load: the agent fetches the code (through the node's cache),
	// unpacks it and starts the process.
	if err := inst.Transition(t, lifecycle.Loading, "load"); err != nil {
		return fail(StepLoad, 0, err)
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LoadTimeout)
	lr, err := s.agent.Load(lctx, pod.Control, fn.loadRequest())
	cancel()
	b.Load = lap()
	b.Fetch, b.CacheHit = millis(lr.Timings.FetchMillis), lr.CacheHit
	switch {
	case errors.Is(err, lifecycle.CodeCodeFetch) || errors.Is(err, lifecycle.CodeBadPackage):
		return fail(StepFetch, 0, err)
	case err != nil:
		return fail(StepLoad, 0, err)
	case lr.FunctionID != fn.ID:
		return fail(StepLoad, 0, fmt.Errorf("%w: load answered for function %q", ErrBadAgentResponse, wire.SanitizeHeaderValue(lr.FunctionID, 80)))
	}
	if err := inst.Transition(t, lifecycle.Loaded, "loaded"); err != nil {
		return fail(StepLoad, 0, err)
	}

	// Initialize, retried in the same process.
	attempts, err := s.initialize(ctx, fn, pod.Control)
	b.Init, b.InitAttempts = lap(), attempts
	if err != nil {
		return fail(StepInit, attempts, err)
	}
	if err := inst.Transition(t, lifecycle.Ready, "initialized"); err != nil {
		return fail(StepInit, attempts, err)
	}
	return Result{Instance: inst, Pod: pod}, nil
}

// initialize calls the init hook up to the function's attempts, waiting
// InitRetryDelay (doubling) between calls. Only a failed hook or a timeout
// is retried; an agent that is gone or confused is not.
func (s *Starter) initialize(ctx context.Context, fn *Function, ctl lifecycle.Control) (attempts int, err error) {
	max := cmp.Or(fn.InitAttempts, DefaultInitAttempts)
	timeout := cmp.Or(fn.InitTimeout, DefaultInitTimeout)
	req := lifecycle.InitializeRequest{FunctionID: fn.ID, TimeoutMillis: timeout.Milliseconds()}
	delay := s.cfg.InitRetryDelay
	for attempts = 1; ; attempts++ {
		// The agent bounds the hook by TimeoutMillis; the call gets a
		// second more, so that the agent's own answer comes first.
		ictx, cancel := context.WithTimeout(ctx, timeout+time.Second)
		var ir lifecycle.InitializeResponse
		ir, err = s.agent.Initialize(ictx, ctl, req)
		cancel()
		if err == nil && ir.FunctionID != fn.ID {
			return attempts, fmt.Errorf("%w: initialize answered for function %q", ErrBadAgentResponse, wire.SanitizeHeaderValue(ir.FunctionID, 80))
		}
		if err == nil {
			return attempts, nil
		}
		retry := errors.Is(err, lifecycle.CodeInitFailed) || errors.Is(err, lifecycle.CodeTimeout) ||
			(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil)
		if !retry || attempts >= max {
			return attempts, err
		}
		if delay > 0 {
			timer := s.clock.NewTimer(delay)
			select {
			case <-timer.C():
			case <-ctx.Done():
				timer.Stop()
				return attempts, fmt.Errorf("%w (after: %w)", ctx.Err(), err)
			}
			delay *= 2
		}
	}
}

// preference scores a pod 1 when its node caches the code.
func (s *Starter) preference(digest string) warmpool.Preference {
	loc := s.cfg.Locality
	if loc == nil {
		return nil
	}
	return func(p warmpool.Pod) int {
		if loc.HasCode(p.Node, digest) {
			return 1
		}
		return 0
	}
}

// deletePod deletes the pod of a failed cold start; it is never reused.
func (s *Starter) deletePod(ctx context.Context, src podSource, pod warmpool.Pod) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DeleteTimeout)
	defer cancel()
	if err := src.discard(dctx, pod); err != nil {
		s.log.Warn("coldstart: deleting the pod of a failed cold start failed", "pod", pod.ID, "err", err)
	}
}

// millis converts an agent's fractional milliseconds, rejecting garbage
// (negative, NaN, infinite or absurd values become 0).
func millis(ms float64) time.Duration {
	if !(ms > 0) || ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// Close stops the cold starts that Ensure runs and waits for them; their
// pods are deleted. Cold starts run by Start end with their callers'
// contexts. Close is idempotent; Start and Ensure fail with ErrClosed after
// it.
func (s *Starter) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// InstanceID returns the ID of the instance a cold start makes of the pod
// podID: instances are named after their pods, so that a component that
// knows only the pods (a host agent reporting their health) can name them.
func InstanceID(podID string) string { return "i-" + podID }
