package faas

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/coldstart"
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
	draining   bool
	drainSince time.Time
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
		MaxWaiters: d.cfg.MaxQueue,
		// The queue time of each request is bounded by its context
		// (FunctionSpec.QueueTimeout, which updates may change); this is
		// only the ceiling.
		MaxWait:    time.Duration(math.MaxInt64),
		Release:    func(rt router.Route) { rt.Release(time.Now(), router.Canceled) },
		TryAcquire: func() (router.Route, bool) { rt, err := d.router.Pick(spec.ID); return rt, err == nil },
	})
	if err != nil {
		return nil, err
	}
	fn.ver.Store(&version{spec: spec, gen: 1, cs: coldstartFunction(spec, 1)})
	return fn, nil
}

func (fn *function) version() *version { return fn.ver.Load() }

// update installs a new spec. A new code package, command, environment,
// protocol, mode or per-instance concurrency starts a new generation, which
// the scaler rolls out (the agents enforce the instance's concurrency too,
// so it changes with new instances); the function-wide limit, scaling bounds
// and timeouts apply at once.
func (fn *function) update(spec FunctionSpec, policy concurrency.ScalingPolicy) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	old := fn.version()
	gen := old.gen
	if rollNeeded(old.spec, spec) {
		gen++
	}
	fn.limit.SetLimit(spec.MaxConcurrency)
	fn.policy = policy
	fn.ver.Store(&version{spec: spec, gen: gen, cs: coldstartFunction(spec, gen)})
}

// rollNeeded reports whether instances of a and b differ in what runs in
// them, so that instances of a must be replaced.
func rollNeeded(a, b FunctionSpec) bool {
	if a.Code != b.Code || a.Runtime != b.Runtime || a.Command != b.Command || a.Protocol != b.Protocol ||
		a.Mode != b.Mode || a.Concurrency != b.Concurrency || len(a.Args) != len(b.Args) || len(a.Env) != len(b.Env) {
		return true
	}
	for i := range a.Args {
		if a.Args[i] != b.Args[i] {
			return true
		}
	}
	for k, v := range a.Env {
		if bv, ok := b.Env[k]; !ok || bv != v {
			return true
		}
	}
	return false
}

// coldstartFunction maps a spec onto what the Starter needs.
func coldstartFunction(s FunctionSpec, gen uint64) coldstart.Function {
	return coldstart.Function{
		ID:         s.ID,
		Generation: strconv.FormatUint(gen, 10),
		Runtime:    s.Runtime,
		Code:       lifecycle.CodeRef{URI: s.Code.URI, Digest: s.Code.Digest, Size: s.Code.Size},
		Command:    s.Command,
		Args:       s.Args,
		Env:        s.Env,
		Protocol:   s.Protocol,
		Limits: lifecycle.Limits{
			Concurrency:   s.Concurrency,
			TimeoutMillis: s.RequestTimeout.Milliseconds(),
		},
		InitTimeout:  s.InitTimeout,
		InitAttempts: s.InitAttempts,
	}
}

func (fn *function) touch(now time.Time) { fn.lastActive.Store(now.UnixNano()) }
