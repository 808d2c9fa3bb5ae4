// Package faas is the dataplane of a Function-as-a-Service platform, as a
// library. A [Dataplane] takes invocations of functions, over HTTP (it is
// an http.Handler: the gateway) or in-process ([Dataplane.Invoke], for
// trigger consumers that bypass the gateway), and runs each on an instance
// of its function with a free concurrency slot, starting one from a pool of
// generic pre-warmed pods when there is none. The platform team keeps its
// control plane and plugs in where its infrastructure differs: a
// warmpool.PodProvider (local processes, Kubernetes...), a code.Store for
// the functions' packages, health checkers, scaling and routing policies.
//
// One invocation is one call (path.go), driven the same way by the gateway
// (gateway.go), by Invoke (invoke.go) and by a request forwarded from
// another node (cluster.go): admit — the load shedder (package loadshed)
// refuses it early under overload, the callers above their fair share
// first; the function-wide concurrency limit protects what the function
// calls; the router (package router) picks a Ready instance with a free
// slot, or the call waits in the function's bounded queue while cold starts
// (package coldstart) take warm pods (package warmpool) and have their
// agents load the code — then send, to the instance's agent, with one retry
// on another instance of a request that never reached a function — then
// end, releasing the slot (to the longest waiter first) and feeding the
// outcome to the breakers, the shedder and the statistics.
//
// A control loop (scaler.go) owns time, on the Dataplane's clock: it
// samples each function's demand, asks its scaling policy (a Knative-style
// KPA by default) how many instances it should have, starts the missing
// ones before requests queue, drains the excess after the keep-alive (down
// to zero), and rolls instances when a function's code changes. Health
// checks, breaker ejections, crashed pods and function processes that die
// (their agents report it at once) take instances out of the routes and get
// them replaced (instances.go). Errors leave the Dataplane as
// *lifecycle.Error values, and on the wire as an HTTP status with
// X-Faas-Error-Code, X-Faas-Error-Message and X-Faas-Request-Id. Several
// Dataplanes can share the functions ([Config.Cluster]): each function is
// owned by one node, chosen by weighted rendezvous hashing of its ID, so
// that its counters, queue and instances live in one place.
package faas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/internal/index"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Errors of the Dataplane's own API (wire errors are *lifecycle.Error).
var (
	// ErrClosed reports a call on a Dataplane that was shut down.
	ErrClosed = errors.New("faas: dataplane closed")
	// ErrNotStarted reports a call that needs Start first.
	ErrNotStarted = errors.New("faas: dataplane not started")
)

// Dataplane is the dataplane of a FaaS platform: it routes invocations to
// function instances, cold-starts instances from warm pools, sheds load and
// keeps its routes true through each instance's lifecycle. Build it with
// [New], call [Dataplane.Start], deploy functions with [Dataplane.Deploy],
// and serve invocations through [Dataplane.ServeHTTP] (the gateway) or
// [Dataplane.Invoke] (in-process). [Dataplane.Shutdown] drains it
// gracefully, [Dataplane.Close] at once. All methods are safe for
// concurrent use.
type Dataplane struct {
	cfg    Config
	log    *slog.Logger
	clock  clock.Clock
	obs    Observer
	ids    *requestIDs
	router *router.Router
	shed   *loadshed.Shedder // nil when shedding is disabled

	// Built by Start; read only while running (state orders the reads).
	pool    *warmpool.Manager
	starter *coldstart.Starter
	health  *router.HealthMonitor

	// funcs maps function IDs to functions, lock-free for readers; Deploy
	// and Remove write under mu so that a deploy and a remove of one ID
	// never interleave.
	funcs *index.Map[*function]
	mu    sync.Mutex
	gens  atomic.Uint64 // the last generation issued, across functions

	// ctx is the background work's: canceled when the Dataplane stops.
	ctx    context.Context
	cancel context.CancelFunc
	state  atomic.Int32 // stateNew, stateRunning, stateStopping, stateClosed
	// runMu orders the spawning of background work against the stop:
	// work spawns under the read lock while running; stopping takes the
	// write lock to leave the running state, after which nothing spawns.
	runMu    sync.RWMutex
	wg       sync.WaitGroup // the scaler, cold starts, watches
	cleanup  sync.WaitGroup // terminations and pod deletions
	stopMu   sync.Mutex     // serializes Start and the stop
	stopped  chan struct{}  // closed when the stop has finished
	stopErr  error
	unbindCt func() bool // stops the watch of Start's context

	// locality remembers which nodes loaded which code digests, so that
	// cold starts prefer pods on nodes whose caches hold the code.
	locality *lru.Cache[localityKey, struct{}]
	// watches holds the cancel function of each instance's watch
	// (instances.go), keyed by *lifecycle.Instance.
	watches sync.Map

	coldStarts coldStartStats
	unknown    atomic.Uint64 // requests for functions not deployed
	rounds     atomic.Uint64 // scaling rounds run, for tests on virtual time

	usage    *usageMeter             // nil without a usage sink
	cluster  atomic.Pointer[cluster] // nil: a single node
	suspects *suspects               // nodes that refused a connection recently
	fwd      forwardStats
}

// The Dataplane's states.
const (
	stateNew int32 = iota
	stateRunning
	stateStopping // Shutdown or Close has begun
	stateClosed
)

// localityEntries bounds the (node, digest) pairs remembered for locality.
const localityEntries = 1 << 16

type localityKey struct{ node, digest string }

// New validates cfg and builds a Dataplane. It starts nothing: call Start.
func New(cfg Config) (*Dataplane, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, obs: cfg.Observer, ids: newRequestIDs(),
		funcs: index.New[*function](), stopped: make(chan struct{})}
	if d.obs == nil {
		d.obs = NopObserver{}
	}
	if d.locality, err = lru.New[localityKey, struct{}](localityEntries); err != nil {
		return nil, err
	}
	if !cfg.DisableShedding {
		if d.shed, err = loadshed.New(cfg.Shedding); err != nil {
			return nil, fmt.Errorf("%w: Shedding: %w", ErrInvalidConfig, err)
		}
	}
	d.router, err = router.New(cfg.Routing, router.Hooks{
		Observer: router.ObserverFunc(d.obs.ObserveRoute),
		Replace:  d.replace,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: Routing: %w", ErrInvalidConfig, err)
	}
	d.suspects = newSuspects(cfg.Cluster.SuspectTimeout)
	d.usage = newUsageMeter(cfg.Usage, cfg.Logger.With("component", "usage"))
	if err := d.setNodes(cfg.Cluster.Nodes); err != nil {
		return nil, err
	}
	// Until Start, the background context is a done one: nothing runs.
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.cancel()
	return d, nil
}

// Start starts the warm pools, the health monitor and the control loop,
// and returns. The Dataplane then runs until ctx is done or Shutdown or
// Close is called; when ctx is done it shuts down as Shutdown does, with
// DrainTimeout for the requests in flight. A configuration error of a
// subsystem is returned here and leaves the Dataplane as New returned it:
// Start may be called again, and Close is safe.
func (d *Dataplane) Start(ctx context.Context) error {
	d.stopMu.Lock()
	defer d.stopMu.Unlock()
	switch d.state.Load() {
	case stateStopping, stateClosed:
		return ErrClosed
	case stateRunning:
		return errors.New("faas: dataplane already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pool, err := warmpool.New(d.cfg.Pods, d.cfg.Pool)
	if err != nil {
		return fmt.Errorf("faas: warm pool: %w", err)
	}
	// The first round now: it joins the membership, and finds out whether
	// another Dataplane uses these pods without sharing their leases.
	if err := pool.Tick(ctx); errors.Is(err, warmpool.ErrSharedPopulation) {
		_ = pool.Close()
		return fmt.Errorf("faas: warm pool: %w (several Dataplanes over one pod population need Config.Cluster with a shared Membership and Leases)", err)
	} else if err != nil {
		d.log.Warn("the warm pool's first round failed", "err", err)
	}
	cs := d.cfg.ColdStart
	if cs.Locality == nil {
		cs.Locality = coldstart.LocalityFunc(func(node, digest string) bool {
			return d.locality.Contains(localityKey{node, digest})
		})
	}
	starter, err := coldstart.New(pool, d.cfg.Agents.Client, cs, coldstart.Hooks{
		// The router follows the states of the instances it routes (one
		// that leaves Ready stops being a candidate at once).
		Observers:   []lifecycle.Observer{lifecycle.ObserverFunc(d.observeInstance), d.router},
		OnColdStart: d.coldStartDone,
	})
	if err != nil {
		_ = pool.Close()
		return fmt.Errorf("faas: cold starts: %w", err)
	}
	health, err := router.NewHealthMonitor(d.router, d.cfg.Health)
	if err == nil {
		err = health.Start()
	}
	if err != nil {
		_ = starter.Close()
		_ = pool.Close()
		return fmt.Errorf("faas: health: %w", err)
	}
	d.pool, d.starter, d.health = pool, starter, health
	d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	sample, scale := d.clock.NewTicker(d.cfg.Scaler.SampleInterval), d.clock.NewTicker(d.cfg.Scaler.Interval)
	d.wg.Go(func() { d.scaleLoop(sample, scale) })
	if m := d.cfg.Cluster.Membership; m != nil {
		d.wg.Go(func() { d.followMembership(m) })
	}
	d.usage.start()
	d.state.Store(stateRunning) // publishes pool, starter and health
	d.unbindCt = context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
		defer cancel()
		_ = d.Shutdown(sctx)
	})
	d.log.Info("dataplane started", "node", d.cfg.NodeID)
	return nil
}

// running reports whether Start succeeded and no stop has begun; its atomic
// load orders the reads of pool, starter and health after Start's writes.
func (d *Dataplane) running() bool { return d.state.Load() == stateRunning }

// spawn runs f in a goroutine that the stop waits for, unless the
// Dataplane is not running; it reports whether f was started.
func (d *Dataplane) spawn(f func()) bool {
	d.runMu.RLock()
	defer d.runMu.RUnlock()
	if !d.running() {
		return false
	}
	d.wg.Go(f)
	return true
}

// Shutdown stops the Dataplane gracefully, in the manner of
// http.Server.Shutdown: new requests get 503 at once and those waiting for
// capacity fail, the scaler and the health checks stop, and the requests in
// flight on instances may finish until ctx is done; then every instance is
// terminated, its pod and the warm pools' idle pods deleted (each deletion
// bounded by DrainTimeout), and every goroutine the Dataplane started has
// returned. It returns ctx.Err() when ctx ended before the requests did,
// and the errors of the deletions. A second call waits for the first one's
// end and returns its result.
func (d *Dataplane) Shutdown(ctx context.Context) error {
	d.stopMu.Lock()
	prev := d.state.Load()
	if prev == stateStopping || prev == stateClosed {
		d.stopMu.Unlock()
		<-d.stopped
		return d.stopErr
	}
	d.runMu.Lock()
	d.state.Store(stateStopping)
	d.runMu.Unlock()
	if d.unbindCt != nil {
		d.unbindCt()
	}
	d.stopMu.Unlock()

	d.cancel()
	var errs []error
	if prev == stateRunning {
		errs = append(errs, d.health.Close())
	}
	d.wg.Wait() // the scaler, the cold-start requests, the watches
	if prev == stateRunning {
		// Cold starts still in flight end here (their pods deleted);
		// those that became Ready meanwhile were handed to cleanup.
		errs = append(errs, d.starter.Close())
	}
	for fn := range d.funcs.All() {
		fn.queue.Close()
		errs = append(errs, d.drainAll(ctx, fn, "dataplane shut down"))
	}
	d.cleanup.Wait()
	errs = append(errs, d.usage.stop()) // the requests have ended: their records are in
	if prev == stateRunning {
		errs = append(errs, d.pool.Close())
	}
	for _, rt := range []http.RoundTripper{d.cfg.Agents.Transport, d.cfg.Cluster.Transport} {
		if t, ok := rt.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
	d.stopErr = errors.Join(errs...)
	d.state.Store(stateClosed)
	close(d.stopped)
	d.log.Info("dataplane stopped", "node", d.cfg.NodeID)
	return d.stopErr
}

// Close stops the Dataplane at once: Shutdown without waiting for the
// requests in flight, which fail as their instances are terminated. It is
// idempotent.
func (d *Dataplane) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil // not waiting was the point
	}
	return err
}

// notRunning is the error of a call while the Dataplane is not running.
func (d *Dataplane) notRunning() error {
	if d.state.Load() >= stateStopping {
		return ErrClosed
	}
	return ErrNotStarted
}
