package faas

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http/httputil"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Errors of the Dataplane's own API (wire errors are *lifecycle.Error).
var (
	// ErrClosed reports a call on a closed Dataplane.
	ErrClosed = errors.New("faas: dataplane closed")
	// ErrNotStarted reports a call that needs Start first.
	ErrNotStarted = errors.New("faas: dataplane not started")
)

// Dataplane is the dataplane of a FaaS platform: it routes invocations to
// function instances, cold-starts instances from warm pools, sheds load and
// keeps its routes true through each instance's lifecycle. Build it with
// [New], call [Dataplane.Start], deploy functions with [Dataplane.Deploy],
// and serve invocations through [Dataplane.ServeHTTP] (the gateway) or
// [Dataplane.Invoke] (in-process). [Dataplane.Close] stops everything it
// started. All methods are safe for concurrent use.
type Dataplane struct {
	cfg     Config
	log     *slog.Logger
	pool    *warmpool.Manager
	starter *coldstart.Starter
	router  *router.Router
	health  *router.HealthMonitor
	shed    *loadshed.Shedder // nil when shedding is disabled
	proxy   *httputil.ReverseProxy
	ids     *requestIDs
	obs     Observer

	// funcs maps function IDs to *function. sync.Map reads take no lock
	// and stay O(1) with any number of functions; Deploy and Remove write
	// under mu so that a deploy and a remove of one ID never interleave.
	funcs sync.Map
	mu    sync.Mutex

	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // background goroutines
	state   atomic.Int32   // 0 new, 1 started, 2 closed
	closeMu sync.Mutex

	coldStarts coldStartStats
	unknown    atomic.Uint64 // requests for functions not deployed

	cluster   atomic.Pointer[cluster] // nil: a single node
	forwarder *httputil.ReverseProxy
	fwd       forwardStats
}

// New validates cfg and builds a Dataplane. It starts nothing: call Start.
func New(cfg Config) (*Dataplane, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, ids: newRequestIDs(), obs: cfg.Observer}
	if d.obs == nil {
		d.obs = NopObserver{}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())

	if _, err := concurrency.NewMeter(cfg.Meter); err != nil {
		return nil, fmt.Errorf("faas: meter: %w", err)
	}
	if !cfg.DisableShedding {
		if d.shed, err = loadshed.New(cfg.Shedding); err != nil {
			return nil, fmt.Errorf("faas: shedding: %w", err)
		}
	}

	rcfg := cfg.Router
	userObs, userReplace := rcfg.Observer, rcfg.Replace
	rcfg.Observer = router.ObserverFunc(func(e router.Event) {
		d.obs.ObserveRoute(e)
		if userObs != nil {
			userObs.ObserveRoute(e)
		}
	})
	rcfg.Replace = func(inst *lifecycle.Instance, reason string) {
		d.replace(inst, reason)
		if userReplace != nil {
			userReplace(inst, reason)
		}
	}
	rcfg.Handoff = d.handoff
	if d.router, err = router.New(rcfg); err != nil {
		return nil, fmt.Errorf("faas: router: %w", err)
	}
	d.proxy = d.newProxy()
	d.forwarder = d.newForwarder()
	if err := d.SetCluster(cfg.Cluster); err != nil {
		return nil, err
	}
	return d, nil
}

// Start starts the warm pools, the health monitor and the scaler. It
// returns an error when a pool cannot start; ctx bounds nothing beyond
// Start itself.
func (d *Dataplane) Start(ctx context.Context) error {
	if !d.state.CompareAndSwap(0, 1) {
		if d.state.Load() == 2 {
			return ErrClosed
		}
		return errors.New("faas: dataplane already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pool, err := warmpool.New(d.cfg.Pool)
	if err != nil {
		return fmt.Errorf("faas: warm pool: %w", err)
	}
	d.pool = pool
	cs := d.cfg.ColdStart
	cs.Pool, cs.Agent = pool, d.cfg.Agent
	cs.Observers = append(append([]lifecycle.Observer(nil), cs.Observers...), lifecycle.ObserverFunc(d.observeInstance))
	userReport := cs.OnColdStart
	cs.OnColdStart = func(r coldstart.Report) {
		d.coldStarts.record(r)
		if fn := d.lookup(r.FunctionID); fn != nil {
			fn.stats.recordColdStart(r)
		}
		d.obs.ObserveColdStart(r)
		if userReport != nil {
			userReport(r)
		}
	}
	if d.starter, err = coldstart.New(cs); err != nil {
		_ = pool.Close()
		return fmt.Errorf("faas: cold starts: %w", err)
	}
	if d.health, err = router.NewHealthMonitor(d.router, d.cfg.Health); err != nil {
		_ = d.starter.Close()
		_ = pool.Close()
		return fmt.Errorf("faas: health: %w", err)
	}
	if err := d.health.Start(); err != nil {
		_ = d.starter.Close()
		_ = pool.Close()
		return fmt.Errorf("faas: health: %w", err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.scaleLoop()
	}()
	d.log.Info("dataplane started", "node", d.cfg.NodeID)
	return nil
}

// Close stops the scaler and the health monitor, fails waiting requests,
// terminates every instance, deletes their pods and the idle pods of the
// warm pools, and waits for every goroutine it started. It is idempotent.
func (d *Dataplane) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	prev := d.state.Swap(2)
	if prev == 2 {
		return nil
	}
	d.cancel()
	var errs []error
	if prev == 1 {
		errs = append(errs, d.health.Close())
	}
	d.wg.Wait() // the scaler and the cold-start goroutines
	now := time.Now()
	var pods []warmpool.Pod
	for fn := range d.all() {
		fn.queue.Close()
		pods = append(pods, d.removeAll(fn, now, "dataplane closed")...)
	}
	if prev == 1 {
		errs = append(errs, d.starter.Close())
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
		for _, p := range pods {
			if err := d.pool.Delete(ctx, p); err != nil && !errors.Is(err, warmpool.ErrPodNotFound) {
				errs = append(errs, err)
			}
		}
		cancel()
		errs = append(errs, d.pool.Close())
	}
	if t, ok := d.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	d.log.Info("dataplane closed", "node", d.cfg.NodeID)
	return errors.Join(errs...)
}

// Deploy adds a function or updates it. An invalid spec is rejected with a
// *SpecError naming every bad field; a code package that the origin does not
// have, or whose size or digest differs, is rejected too. Updating a spec
// with new code rolls the function's instances: new ones cold-start, old ones
// drain once a new one is Ready; requests meanwhile go to the old ones or
// wait, and none fails.
func (d *Dataplane) Deploy(ctx context.Context, spec FunctionSpec) error {
	if d.state.Load() == 2 {
		return ErrClosed
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	spec = spec.withDefaults()
	if err := d.verifyCode(ctx, spec.Code); err != nil {
		return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: "Code", Reason: err.Error()}}}
	}
	if _, ok := d.cfg.Pool.Runtimes[spec.Runtime]; !ok {
		return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: "Runtime", Reason: fmt.Sprintf("no warm pool for runtime %q", spec.Runtime)}}}
	}
	policy, err := d.scalingPolicy(spec)
	if err != nil {
		return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: "Scaling", Reason: err.Error()}}}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if fn := d.lookup(spec.ID); fn != nil {
		fn.update(spec, policy)
		d.log.Info("function updated", "function", spec.ID, "generation", fn.version().gen)
		return nil
	}
	fn, err := d.newFunction(spec, policy)
	if err != nil {
		return err
	}
	d.funcs.Store(spec.ID, fn)
	d.log.Info("function deployed", "function", spec.ID, "runtime", spec.Runtime)
	return nil
}

func (d *Dataplane) scalingPolicy(spec FunctionSpec) (concurrency.ScalingPolicy, error) {
	if d.cfg.Scaling != nil {
		return d.cfg.Scaling(spec)
	}
	return concurrency.NewKPA(concurrency.KPAConfig{
		MinInstances: spec.MinInstances, MaxInstances: spec.MaxInstances, KeepAlive: spec.KeepAlive,
	})
}

// verifyCode reads the package from the origin and checks it against ref.
func (d *Dataplane) verifyCode(ctx context.Context, ref code.Ref) error {
	rc, err := d.cfg.Code.Open(ctx, ref)
	if err != nil {
		return err
	}
	defer rc.Close()
	v := code.VerifyReader(rc, ref)
	buf := make([]byte, 32<<10)
	for {
		_, err := v.Read(buf)
		if errors.Is(err, errEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Remove removes a function: its routes at once, then its instances drain
// and their pods are deleted. Requests waiting for it fail.
func (d *Dataplane) Remove(ctx context.Context, id string) error {
	d.mu.Lock()
	fn := d.lookup(id)
	if fn == nil {
		d.mu.Unlock()
		return lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %q is not deployed", id)
	}
	d.funcs.Delete(id)
	d.mu.Unlock()

	fn.queue.Close()
	fn.mu.Lock()
	fn.removed = true
	fn.mu.Unlock()
	pods := d.removeAll(fn, time.Now(), "function removed")
	var errs []error
	if d.pool != nil {
		for _, p := range pods {
			if err := d.pool.Delete(ctx, p); err != nil && !errors.Is(err, warmpool.ErrPodNotFound) {
				errs = append(errs, err)
			}
		}
	}
	d.log.Info("function removed", "function", id)
	return errors.Join(errs...)
}

// removeAll takes every instance of fn out of the routes and terminates it,
// returning the pods to delete. Requests in flight on them run to their end
// against processes that are about to go; callers use it only when the
// function or the dataplane goes away.
func (d *Dataplane) removeAll(fn *function, now time.Time, reason string) []warmpool.Pod {
	fn.mu.Lock()
	insts := make([]*instance, 0, len(fn.instances))
	for _, in := range fn.instances {
		insts = append(insts, in)
	}
	clear(fn.instances)
	fn.mu.Unlock()
	pods := make([]warmpool.Pod, 0, len(insts))
	for _, in := range insts {
		d.router.Remove(now, in.inst, reason)
		_ = in.inst.Transition(now, lifecycle.Draining, reason)
		_ = in.inst.Transition(now, lifecycle.Terminated, reason)
		pods = append(pods, podOf(in.inst))
	}
	return pods
}

func podOf(inst *lifecycle.Instance) warmpool.Pod {
	return warmpool.Pod{ID: inst.PodID, Node: inst.Node, Addr: inst.Addr, Runtime: inst.Runtime}
}

// lookup returns the deployed function id, or nil.
func (d *Dataplane) lookup(id string) *function {
	if v, ok := d.funcs.Load(id); ok {
		return v.(*function)
	}
	return nil
}

// all iterates over the deployed functions.
func (d *Dataplane) all() iter.Seq[*function] {
	return func(yield func(*function) bool) {
		d.funcs.Range(func(_, v any) bool { return yield(v.(*function)) })
	}
}

// Functions returns the IDs of the deployed functions, sorted.
func (d *Dataplane) Functions() []string {
	var out []string
	for fn := range d.all() {
		out = append(out, fn.id)
	}
	slices.Sort(out)
	return out
}

// observeInstance follows every instance the Starter creates: a Ready
// instance joins its function and the routes, and requests waiting for
// capacity are served from it at once.
func (d *Dataplane) observeInstance(inst *lifecycle.Instance, t lifecycle.Transition) {
	d.obs.ObserveInstance(inst, t)
	fn := d.lookup(inst.FunctionID)
	switch {
	case t.To == lifecycle.Ready && t.From == lifecycle.Loaded:
		if fn == nil || d.state.Load() == 2 {
			return // removed meanwhile; the scaler of nobody will delete it: do it here
		}
		gen, _ := strconv.ParseUint(inst.Generation, 10, 64)
		v := fn.version()
		slots := concurrency.NewSlots(v.spec.Mode, v.spec.Concurrency)
		fn.mu.Lock()
		if fn.removed {
			fn.mu.Unlock()
			return
		}
		fn.instances[inst.ID] = &instance{inst: inst, slots: slots, gen: gen}
		fn.mu.Unlock()
		if err := d.router.Add(t.At, inst, slots); err != nil {
			d.log.Warn("route not added", "instance", inst.ID, "err", err)
			return
		}
		fn.queue.Dispatch()
	case t.To == lifecycle.Unhealthy || t.To == lifecycle.Ready:
		// The router follows health transitions of its instances itself.
	}
}

// replace is called by the router when it gives up on an instance (ejected
// repeatedly, liveness failed): start a replacement and drain the old one.
func (d *Dataplane) replace(inst *lifecycle.Instance, reason string) {
	fn := d.lookup(inst.FunctionID)
	if fn == nil {
		return
	}
	d.log.Warn("replacing instance", "instance", inst.ID, "reason", reason)
	fn.mu.Lock()
	if in, ok := fn.instances[inst.ID]; ok && !in.draining {
		in.draining, in.drainSince = true, time.Now()
	}
	fn.mu.Unlock()
	d.ensure(fn, fn.version(), 1)
}

// handoff offers a released slot to the function's queued requests.
func (d *Dataplane) handoff(rt router.Route) bool {
	fn := d.lookup(rt.Instance().FunctionID)
	if fn == nil || fn.queue.Len() == 0 {
		return false
	}
	return fn.queue.Handoff(rt)
}
