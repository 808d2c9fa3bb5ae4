package faas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// function is the Dataplane's state of one deployed function.
type function struct {
	id    string
	ver   atomic.Pointer[version]
	limit *concurrency.FunctionLimit
	queue *concurrency.Queue[router.Route]
	// meter is created at the function's first demand: most functions of
	// a large fleet are idle. Only the scaler goroutine touches it.
	meter *concurrency.Meter
	stats *functionStats

	// demand counts the requests admitted for the function and not yet
	// finished: waiting for a slot or running. The sampler feeds it to the
	// meter.
	demand     atomic.Int64
	lastActive atomic.Int64 // unix nanoseconds of the last admission or release
	sampled    int64        // the last value fed to the meter; scaler goroutine only

	// firstGen is the generation this function object started with:
	// generations come from one counter per Dataplane, so an instance of a
	// removed incarnation of the same ID has a smaller one.
	firstGen uint64

	// Cold-start backoff: after failed cold starts, new ones wait.
	csFailures atomic.Int32
	csRetryAt  atomic.Int64 // unix nanoseconds

	// Steady instances: one start in flight at a time, with a backoff
	// after failures (scaler goroutine, and the start's goroutine for the
	// end).
	steadyStarting atomic.Bool
	steadyFailures atomic.Int32
	steadyRetryAt  atomic.Int64 // unix nanoseconds

	mu        sync.Mutex // guards the fields below
	policy    concurrency.ScalingPolicy
	instances map[string]*instance
	removed   bool
}

// version is what the hot path reads of a function's current deployment;
// it is replaced as a whole on update.
type version struct {
	spec FunctionSpec
	gen  uint64
	cs   coldstart.Function
}

// instance is one Ready instance of a function as the Dataplane tracks it.
type instance struct {
	inst       *lifecycle.Instance
	slots      *concurrency.Slots
	gen        uint64
	readyAt    time.Time
	draining   bool
	drainSince time.Time
	steady     bool // on a pod created for the function (Info.Dedicated)
}

// Deploy adds a function or updates it. An invalid spec is rejected with a
// *SpecError naming every bad field; a code package that the origin does not
// have, or whose size or digest differs, is rejected too. Updating a spec
// with new code rolls the function's instances: new ones cold-start, old ones
// drain once a new one is Ready; requests meanwhile go to the old ones or
// wait, and none fails.
func (d *Dataplane) Deploy(ctx context.Context, spec FunctionSpec) error {
	if d.state.Load() >= stateStopping {
		return ErrClosed
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	spec = spec.withDefaults()
	specErr := func(field string, err error) error {
		return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: field, Reason: err.Error()}}}
	}
	// The agent protocol's own limits (command, args, environment).
	cs := coldstartFunction(spec, 1)
	if err := cs.Validate(); err != nil {
		return specErr("Spec", err)
	}
	if err := d.verifyCode(ctx, spec.Code); err != nil {
		return specErr("Code", err)
	}
	if _, ok := d.cfg.Pool.Runtimes[spec.Runtime]; !ok {
		return specErr("Runtime", fmt.Errorf("no warm pool for runtime %q", spec.Runtime))
	}
	policy, err := d.scalingPolicy(spec)
	if err != nil {
		return specErr("Scaling", err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if fn := d.lookup(spec.ID); fn != nil {
		if err := fn.update(spec, policy, &d.gens); err != nil {
			return specErr("Scaling", err)
		}
		d.log.Info("function updated", "function", spec.ID, "generation", fn.version().gen)
		return nil
	}
	fn, err := d.newFunction(spec, policy)
	if err != nil {
		return err
	}
	d.funcs.Store(fn.id, fn)
	d.log.Info("function deployed", "function", spec.ID, "runtime", spec.Runtime)
	return nil
}

// Remove removes a function. New requests for it get 404 at once and those
// waiting for capacity fail; its instances leave the routes, finish the
// requests in flight (bounded by ctx and DrainTimeout), and are terminated
// and their pods deleted before Remove returns.
func (d *Dataplane) Remove(ctx context.Context, id string) error {
	d.mu.Lock()
	fn := d.lookup(id)
	if fn == nil {
		d.mu.Unlock()
		return lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %q is not deployed", id)
	}
	d.funcs.Delete(id)
	fn.mu.Lock()
	fn.removed = true
	fn.mu.Unlock()
	d.mu.Unlock()

	fn.queue.Close()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DrainTimeout)
	defer cancel()
	err := d.drainAll(ctx, fn, "function removed")
	d.log.Info("function removed", "function", id)
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // the drain used its time; the pods are deleted anyway
	}
	return err
}

// lookup returns the deployed function id, or nil.
func (d *Dataplane) lookup(id string) *function {
	fn, _ := d.funcs.Get(id)
	return fn
}

// Functions returns the IDs of the deployed functions, sorted.
func (d *Dataplane) Functions() []string {
	var out []string
	for fn := range d.funcs.All() {
		out = append(out, fn.id)
	}
	slices.Sort(out)
	return out
}

func (d *Dataplane) scalingPolicy(spec FunctionSpec) (concurrency.ScalingPolicy, error) {
	if d.cfg.Scaler.Policy != nil {
		return d.cfg.Scaler.Policy(spec)
	}
	return concurrency.NewKPA(concurrency.KPAConfig{
		MinInstances: spec.MinInstances, MaxInstances: spec.MaxInstances, KeepAlive: spec.KeepAlive,
		// Panic mode ends after a stable window without panic, the same
		// window the meter averages over (Knative couples them too).
		StableWindow: d.cfg.Scaler.Meter.StableWindow,
	})
}

// verifyCode reads the package from the origin and checks it against ref.
func (d *Dataplane) verifyCode(ctx context.Context, ref code.Ref) error {
	rc, err := d.cfg.Code.Open(ctx, ref)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, code.VerifyReader(rc, ref))
	return err
}

func (d *Dataplane) newFunction(spec FunctionSpec, policy concurrency.ScalingPolicy) (*function, error) {
	fn := &function{
		id:        spec.ID,
		limit:     concurrency.NewFunctionLimit(spec.MaxConcurrency),
		stats:     newFunctionStats(),
		policy:    policy,
		instances: map[string]*instance{},
	}
	var err error
	fn.queue, err = concurrency.NewQueue(concurrency.QueueConfig[router.Route]{
		MaxWaiters: d.cfg.Limits.MaxQueue,
		// The queue time of each request is bounded by its context
		// (FunctionSpec.QueueTimeout, which updates may change); this is
		// only the ceiling.
		MaxWait:    time.Duration(math.MaxInt64),
		Release:    func(rt router.Route) { rt.Release(d.clock.Now(), router.Canceled) },
		TryAcquire: func() (router.Route, bool) { rt, err := d.router.Pick(spec.ID); return rt, err == nil },
	})
	if err != nil {
		return nil, err
	}
	gen := d.gens.Add(1)
	fn.firstGen = gen
	fn.ver.Store(&version{spec: spec, gen: gen, cs: coldstartFunction(spec, gen)})
	return fn, nil
}

func (fn *function) version() *version { return fn.ver.Load() }

// update installs a new spec, with policy as the scaling policy when the
// scaling settings changed (a no-op redeploy keeps the policy's state,
// e.g. panic mode). A new code package, command, environment, protocol,
// mode or per-instance concurrency starts a new generation, which the
// scaler rolls out (the agents enforce the instance's concurrency too, so
// it changes with new instances); the function-wide limit, scaling bounds
// and timeouts apply at once.
func (fn *function) update(spec FunctionSpec, policy concurrency.ScalingPolicy, gens *atomic.Uint64) error {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	old := fn.version()
	if scalingChanged(old.spec, spec) {
		fn.policy = policy
	}
	gen := old.gen
	if rollNeeded(old.spec, spec) {
		gen = gens.Add(1)
		fn.csFailures.Store(0)
		fn.csRetryAt.Store(0)
	}
	fn.limit.SetLimit(spec.MaxConcurrency)
	fn.ver.Store(&version{spec: spec, gen: gen, cs: coldstartFunction(spec, gen)})
	return nil
}

// scalingChanged reports whether the scaling policy must be rebuilt.
func scalingChanged(a, b FunctionSpec) bool {
	return a.MinInstances != b.MinInstances || a.MaxInstances != b.MaxInstances ||
		a.KeepAlive != b.KeepAlive || a.Concurrency != b.Concurrency || a.Mode != b.Mode
}

// rollNeeded reports whether instances of a and b differ in what runs in
// them, so that instances of a must be replaced.
func rollNeeded(a, b FunctionSpec) bool {
	return a.Code != b.Code || a.Runtime != b.Runtime || a.Command != b.Command || a.Protocol != b.Protocol ||
		a.Mode != b.Mode || a.Concurrency != b.Concurrency || a.MemoryBytes != b.MemoryBytes || a.MilliCPU != b.MilliCPU ||
		!slices.Equal(a.Args, b.Args) || !maps.Equal(a.Env, b.Env)
}

// coldstartFunction maps a spec onto what the Starter needs.
func coldstartFunction(s FunctionSpec, gen uint64) coldstart.Function {
	return coldstart.Function{
		ID:         s.ID,
		Generation: gen,
		Runtime:    s.Runtime,
		Code:       lifecycle.CodeRef{URI: s.Code.URI, Digest: s.Code.Digest, Size: s.Code.Size},
		Command:    s.Command,
		Args:       s.Args,
		Env:        s.Env,
		Protocol:   s.Protocol,
		Limits: lifecycle.Limits{
			Concurrency:   s.Concurrency,
			MemoryBytes:   s.MemoryBytes,
			MilliCPU:      s.MilliCPU,
			TimeoutMillis: s.RequestTimeout.Milliseconds(),
		},
		InitTimeout:  s.InitTimeout,
		InitAttempts: s.InitAttempts,
	}
}

func (fn *function) touch(now time.Time) { fn.lastActive.Store(now.UnixNano()) }

// Cold-start backoff bounds: a function whose cold starts keep failing
// (bad code, a crashing init) is retried at most this often, instead of on
// every scaling decision and every queued request.
const (
	coldStartBackoffBase = 100 * time.Millisecond
	coldStartBackoffMax  = 30 * time.Second
)

// coldStartDone records the end of a cold start for the backoff.
func (fn *function) coldStartDone(ok bool, now time.Time) {
	if ok {
		fn.csFailures.Store(0)
		fn.csRetryAt.Store(0)
		return
	}
	n := min(fn.csFailures.Add(1), 20)
	wait := min(coldStartBackoffBase<<(n-1), coldStartBackoffMax)
	fn.csRetryAt.Store(now.Add(wait).UnixNano())
}

// backingOff reports whether new cold starts must wait after failures.
func (fn *function) backingOff(now time.Time) bool {
	at := fn.csRetryAt.Load()
	return at != 0 && now.UnixNano() < at
}
