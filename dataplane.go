package faas

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http/httputil"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
	lru "github.com/hashicorp/golang-lru/v2"
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

	// funcs maps function IDs to functions, lock-free for readers; Deploy
	// and Remove write under mu so that a deploy and a remove of one ID
	// never interleave.
	funcs *funcTable
	mu    sync.Mutex

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	state  atomic.Int32 // stateNew, stateStarting, stateRunning, stateClosed
	// runMu orders the spawning of background work against Close: work
	// spawns under the read lock while running; Close takes the write
	// lock to leave the running state, after which nothing spawns.
	runMu   sync.RWMutex
	wg      sync.WaitGroup // the scaler and cold-start requests
	cleanup sync.WaitGroup // terminations and pod deletions
	closeMu sync.Mutex     // serializes Start and Close
	gens    atomic.Uint64  // the last generation issued, across functions
	// locality remembers which nodes loaded which code digests, so that
	// cold starts prefer pods on nodes whose caches hold the code.
	locality *lru.Cache[localityKey, struct{}]

	coldStarts coldStartStats
	unknown    atomic.Uint64 // requests for functions not deployed

	// watches holds the cancel function of each instance's watch (see
	// watch.go), keyed by *lifecycle.Instance.
	watches sync.Map

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
	d := &Dataplane{cfg: cfg, log: cfg.Logger, ids: newRequestIDs(), obs: cfg.Observer, funcs: newFuncTable()}
	if d.locality, err = lru.New[localityKey, struct{}](localityEntries); err != nil {
		return nil, err
	}
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
	if rcfg.Handoff != nil {
		return nil, fmt.Errorf("%w: Router.Handoff is the Dataplane's own hook", ErrInvalidConfig)
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

// Deploy adds a function or updates it. An invalid spec is rejected with a
// *SpecError naming every bad field; a code package that the origin does not
// have, or whose size or digest differs, is rejected too. Updating a spec
// with new code rolls the function's instances: new ones cold-start, old ones
// drain once a new one is Ready; requests meanwhile go to the old ones or
// wait, and none fails.
func (d *Dataplane) Deploy(ctx context.Context, spec FunctionSpec) error {
	if d.state.Load() == stateClosed {
		return ErrClosed
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	spec = spec.withDefaults()
	// The agent protocol's own limits (command, args, environment).
	cs := coldstartFunction(spec, 1)
	if err := cs.Validate(); err != nil {
		return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: "Spec", Reason: err.Error()}}}
	}
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
		if err := fn.update(spec, func() (concurrency.ScalingPolicy, error) { return d.scalingPolicy(spec) }, &d.gens); err != nil {
			return &SpecError{ID: spec.ID, Fields: []*FieldError{{Field: "Scaling", Reason: err.Error()}}}
		}
		d.log.Info("function updated", "function", spec.ID, "generation", fn.version().gen)
		return nil
	}
	fn, err := d.newFunction(spec, policy)
	if err != nil {
		return err
	}
	d.funcs.store(fn)
	d.log.Info("function deployed", "function", spec.ID, "runtime", spec.Runtime)
	return nil
}

func (d *Dataplane) scalingPolicy(spec FunctionSpec) (concurrency.ScalingPolicy, error) {
	if d.cfg.Scaling != nil {
		return d.cfg.Scaling(spec)
	}
	return concurrency.NewKPA(concurrency.KPAConfig{
		MinInstances: spec.MinInstances, MaxInstances: spec.MaxInstances, KeepAlive: spec.KeepAlive,
		// Panic mode ends after a stable window without panic, the same
		// window the meter averages over (Knative couples them too).
		StableWindow: d.cfg.Meter.StableWindow,
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

// lookup returns the deployed function id, or nil.
func (d *Dataplane) lookup(id string) *function { return d.funcs.load(id) }

// all iterates over the deployed functions.
func (d *Dataplane) all() iter.Seq[*function] { return d.funcs.all() }

// Functions returns the IDs of the deployed functions, sorted.
func (d *Dataplane) Functions() []string {
	var out []string
	for fn := range d.all() {
		out = append(out, fn.id)
	}
	slices.Sort(out)
	return out
}

// handoff offers a released slot to the function's queued requests.
func (d *Dataplane) handoff(rt router.Route) bool {
	fn := d.lookup(rt.Instance().FunctionID)
	if fn == nil || fn.queue.Len() == 0 {
		return false
	}
	return fn.queue.Handoff(rt)
}
