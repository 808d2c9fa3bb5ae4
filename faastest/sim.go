package faastest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/sharding"
	"github.com/faasplane/faas/warmpool"
)

// ErrWorkload is matched (errors.Is) by the error of a workload whose
// arrivals go back in time or name no function, or whose Err method
// reports a failure.
var ErrWorkload = errors.New("faastest: bad workload")

// Run simulates the workload under cfg on a virtual clock and returns the
// report. Everything happens on the calling goroutine, in virtual-time
// order, with every random choice drawn from generators seeded from
// cfg.Seed: the same config, workload and seed give the same report, bit
// for bit. Run returns an error wrapping ErrConfig for an invalid config or
// a policy constructor's error, and one wrapping ErrWorkload when an
// arrival comes before the previous one or names no function, or when the
// workload's Err method (see [Workload]) returns an error.
func Run(cfg Config, w Workload) (*Report, error) {
	s, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.run(w); err != nil {
		return nil, err
	}
	return s.report(), nil
}

// sim is the state of one run. All times are virtual nanoseconds since
// Epoch.
type sim struct {
	cfg    Config
	now    int64
	warmUp int64
	until  int64
	warm   bool // the warm-up has passed

	seq       uint64
	events    eventHeap
	processed int64
	ticks     int64 // scaling ticks so far
	sched     scheduler
	replicas  []concurrency.Replica // scratch of decide

	rng     *rand.Rand // cold-start steps, pod creation
	failRng *rand.Rand // crashes and node losses, apart so that they perturb nothing else
	lbRng   *rand.Rand // the dataplane each invocation reaches
	router  *router.Router

	dps       []*dataplane
	table     *sharding.Table
	fns       []*function
	byID      map[string]*function
	specs     map[string]FunctionSpec
	insts     map[*lifecycle.Instance]*instance
	instSeq   int
	runtimes  []string // sorted
	defaultRT string
	nodes     []*node
	shared    *byteLRU // nil: no shared tier
	nodeNext  int

	coldActive int // cold starts asked for and not Ready
	held       int // requests holding a slot
	queued     int // requests waiting for a slot
	forwarding int // requests between two dataplanes

	free    []*request
	freeFwd []*forwarded
	total   acct
	tl      timeline
	limits  limitStats
	fails   failStats
}

// dataplane is one dataplane node: its shedder, its cold-start bound and
// its warm pools, as one faas.Dataplane has.
type dataplane struct {
	name        string
	shed        *loadshed.Shedder
	pools       []*pool // by runtime, sorted
	byRuntime   map[string]*pool
	creating    int // pod creations in flight
	coldRunning int // cold starts past the MaxColdStarts gate
	coldWait    fifo[*coldStart]
	st          dpStats
}

type dpStats struct {
	functions, arrived, forwarded, shed int64
}

// acct integrates instance counts over virtual time: alive instances (a
// pod taken for a cold start until the instance terminates) and idle ones
// (Ready with nothing in flight). Pools use it for idle pods.
type acct struct {
	alive, idle int
	peak        int
	last        int64
	aliveNs     float64
	idleNs      float64
}

func (a *acct) add(now int64, dAlive, dIdle int) {
	if dt := now - a.last; dt > 0 {
		a.aliveNs += float64(a.alive) * float64(dt)
		a.idleNs += float64(a.idle) * float64(dt)
	}
	a.last = now
	a.alive += dAlive
	a.idle += dIdle
	a.peak = max(a.peak, a.alive)
}

// restart drops what was integrated before now (the end of the warm-up).
func (a *acct) restart(now int64) {
	a.add(now, 0, 0)
	a.aliveNs, a.idleNs, a.peak = 0, 0, a.alive
}

func newSim(cfg Config) (*sim, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &sim{
		cfg:      cfg,
		warmUp:   int64(cfg.WarmUp),
		until:    int64(cfg.Until),
		warm:     cfg.WarmUp == 0,
		rng:      newRand(cfg.Seed),
		failRng:  newRand(cfg.Seed ^ 0xfa11fa11fa11fa11),
		lbRng:    newRand(cfg.Seed ^ 0x1b1b1b1b1b1b1b1b),
		byID:     make(map[string]*function),
		specs:    make(map[string]FunctionSpec, len(cfg.Functions)),
		insts:    make(map[*lifecycle.Instance]*instance),
		runtimes: slices.Sorted(maps.Keys(cfg.Runtimes)),
		tl:       timeline{step: int64(cfg.SampleEvery)},
	}
	s.sched.init(max(int64((cfg.DormantInterval+cfg.ScaleInterval/2)/cfg.ScaleInterval), 1))
	var err error
	s.router, err = router.New(router.Config{
		Policy: cfg.Policy,
		Rand:   rand.NewPCG(cfg.Seed^0x5851f42d4c957f2d, cfg.Seed+0x14057b7ef767814f),
	}, router.Hooks{Replace: s.replace})
	if err != nil {
		return nil, fmt.Errorf("%w: router: %w", ErrConfig, err)
	}
	s.defaultRT = s.runtimes[0]
	members := make([]sharding.Node, cfg.Dataplanes)
	for i := range cfg.Dataplanes {
		dp := &dataplane{name: "dp-" + strconv.Itoa(i), byRuntime: make(map[string]*pool)}
		members[i] = sharding.Node{ID: dp.name, Weight: 1}
		if !cfg.NoShedding {
			if dp.shed, err = cfg.Shedder(); err != nil {
				return nil, fmt.Errorf("%w: shedder: %w", ErrConfig, err)
			}
		}
		for _, name := range s.runtimes {
			rs := cfg.Runtimes[name]
			rc := warmpool.RuntimeConfig{Min: rs.Min, Max: rs.Max}
			sz, err := cfg.Sizing(name, rc)
			if err != nil {
				return nil, fmt.Errorf("%w: sizing policy of runtime %q: %w", ErrConfig, name, err)
			}
			p := &pool{name: name, spec: rs, sizing: sz, dp: dp}
			dp.pools = append(dp.pools, p)
			dp.byRuntime[name] = p
		}
		s.dps = append(s.dps, dp)
	}
	s.table = sharding.MustNew(members...)
	for i := range cfg.Code.Nodes {
		n := &node{name: fmt.Sprintf("node-%d", i), cache: newByteLRU(cfg.Code.NodeCacheBytes), speed: 1}
		if sp := cfg.Speeds.Nodes; len(sp) > 0 {
			n.speed = sp[i%len(sp)]
		}
		s.nodes = append(s.nodes, n)
	}
	if cfg.Code.SharedCacheBytes > 0 {
		s.shared = newByteLRU(cfg.Code.SharedCacheBytes)
	}
	def := cfg.Default.resolve(s.defaultRT)
	def.ID = "default"
	if err := def.validate(cfg.Runtimes); err != nil {
		return nil, err
	}
	for _, fn := range cfg.Functions {
		fn = fn.resolve(s.defaultRT)
		if err := fn.validate(cfg.Runtimes); err != nil {
			return nil, err
		}
		s.specs[fn.ID] = fn
	}
	// Listed functions exist from the start, so that their MinInstances
	// are started before any traffic.
	for _, fn := range cfg.Functions {
		if _, err := s.function(fn.ID); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// time converts virtual time to the time.Time the policies take.
func (s *sim) time() time.Time { return Epoch.Add(time.Duration(s.now)) }

// busy reports whether work remains that the run must finish: requests
// holding, waiting for a slot or being forwarded, and cold starts.
func (s *sim) busy() bool {
	return s.held > 0 || s.queued > 0 || s.coldActive > 0 || s.forwarding > 0
}

func (s *sim) run(w Workload) error {
	for _, dp := range s.dps {
		for _, p := range dp.pools {
			p.target = p.sizing.Target(s.time())
		}
	}
	s.replenish()
	s.sched.tick(s) // every listed function decides at the start
	s.schedule(event{at: int64(s.cfg.ScaleInterval), kind: evScaleTick})
	s.schedule(event{at: int64(s.cfg.PoolInterval), kind: evPoolTick})
	s.scheduleFailures()
	a, more := w.Next()
	for {
		next := s.events[0].at // the ticks are always scheduled
		if more && int64(a.At) <= next {
			if int64(a.At) < s.now {
				return fmt.Errorf("%w: arrival for %q at %v comes before one at %v", ErrWorkload, a.Function, a.At, time.Duration(s.now))
			}
			s.advance(int64(a.At))
			if err := s.reach(a); err != nil {
				return err
			}
			s.processed++
			a, more = w.Next()
			continue
		}
		if !more && !s.busy() && next > s.until {
			break
		}
		e := s.events.pop()
		s.advance(e.at)
		s.handle(e)
		s.processed++
	}
	if ew, ok := w.(interface{ Err() error }); ok {
		if err := ew.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrWorkload, err)
		}
	}
	s.advance(max(s.now, s.until))
	s.tl.finish(s, s.now)
	return nil
}

// advance moves virtual time to t: the timeline samples the state that
// held until t, and the warm-up ends when t reaches it.
func (s *sim) advance(t int64) {
	if !s.warm && t >= s.warmUp {
		s.tl.sample(s, s.warmUp)
		s.now = s.warmUp
		s.warm = true
		s.total.restart(s.now)
		for _, f := range s.fns {
			f.acct.restart(s.now)
		}
		for _, dp := range s.dps {
			for _, p := range dp.pools {
				p.acct.restart(s.now)
			}
		}
	}
	s.tl.sample(s, t)
	s.now = t
}

func (s *sim) handle(e event) {
	switch e.kind {
	case evComplete:
		if r := e.req; r.gen == e.gen && r.attempt == uint32(e.aux) {
			s.complete(r)
		}
	case evQueueTimeout:
		if r := e.req; r.gen == e.gen && r.state == stQueued {
			s.giveUp(r)
		}
	case evArrive:
		s.forwarding--
		fw := *e.fwd
		*e.fwd = forwarded{}
		s.freeFwd = append(s.freeFwd, e.fwd)
		s.arrive(fw.f, fw.a)
	case evColdReady:
		s.coldReady(e.cs)
	case evPodCreated:
		s.podCreated(e.pool, e.aux)
	case evCrash:
		s.crash(e.inst)
	case evDetect:
		s.detected(e.inst)
	case evNodeLoss:
		s.loseNode(e.node)
	case evNodeBack:
		s.nodeBack(e.node)
	case evScaleTick:
		for _, dp := range s.dps {
			if dp.shed != nil {
				dp.shed.Tick(s.time())
			}
		}
		s.ticks++
		s.sched.tick(s)
		s.schedule(event{at: s.now + int64(s.cfg.ScaleInterval), kind: evScaleTick})
	case evPoolTick:
		for _, dp := range s.dps {
			for _, p := range dp.pools {
				p.target = p.sizing.Target(s.time())
			}
		}
		s.replenish()
		s.schedule(event{at: s.now + int64(s.cfg.PoolInterval), kind: evPoolTick})
	}
}

// reach is an invocation reaching the dataplane the load balancer sends
// it to: admitted there when that dataplane owns the function, forwarded
// to the owner otherwise.
func (s *sim) reach(a Arrival) error {
	if a.Function == "" {
		return fmt.Errorf("%w: arrival at %v without a function", ErrWorkload, a.At)
	}
	f, err := s.function(a.Function)
	if err != nil {
		return err
	}
	if len(s.dps) == 1 {
		s.arrive(f, a)
		return nil
	}
	at := s.dps[s.lbRng.IntN(len(s.dps))]
	counted := int64(a.At) >= s.warmUp
	if counted {
		at.st.arrived++
	}
	if at == f.dp {
		s.arrive(f, a)
		return nil
	}
	if counted {
		at.st.forwarded++
	}
	s.forwarding++
	hop := int64(sample(s.cfg.Forward, s.lbRng))
	var fw *forwarded
	if n := len(s.freeFwd); n > 0 {
		fw, s.freeFwd = s.freeFwd[n-1], s.freeFwd[:n-1]
	} else {
		fw = new(forwarded)
	}
	*fw = forwarded{a: a, f: f}
	s.schedule(event{at: s.now + hop, kind: evArrive, fwd: fw})
	return nil
}

// forwarded is an invocation on its way to its function's owner.
type forwarded struct {
	a Arrival
	f *function
}

// function returns the function with the given ID, creating it (from its
// listed spec or the default one) when the workload names it first.
func (s *sim) function(id string) (*function, error) {
	if f, ok := s.byID[id]; ok {
		return f, nil
	}
	spec, ok := s.specs[id]
	if !ok {
		spec = s.cfg.Default.resolve(s.defaultRT)
		spec.ID = id
	}
	scaler, err := s.cfg.Scaler(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: scaling policy of %q: %w", ErrConfig, id, err)
	}
	meter, err := concurrency.NewMeter(s.cfg.Meter)
	if err != nil {
		return nil, fmt.Errorf("%w: meter: %w", ErrConfig, err)
	}
	owner := s.dps[0]
	if len(s.dps) > 1 {
		n, _ := s.table.Pick(id)
		owner = s.dps[slices.IndexFunc(s.dps, func(dp *dataplane) bool { return dp.name == n.ID })]
	}
	owner.st.functions++
	// Each function draws its service times from its own stream, so that
	// two configurations replaying one workload see the same demands.
	seed := s.cfg.Seed ^ uint64(len(s.fns)+1)*0x9e3779b97f4a7c15
	f := &function{
		idx: len(s.fns), spec: spec, rng: newRand(seed), scaler: scaler, meter: meter,
		dp: owner, pool: owner.byRuntime[spec.Runtime], heap: -1,
	}
	f.quiet, _ = scaler.(concurrency.Quiet)
	if spec.MaxConcurrency > 0 {
		f.limit = concurrency.NewFunctionLimit(spec.MaxConcurrency)
	}
	f.acct.last = s.now
	s.fns = append(s.fns, f)
	s.byID[id] = f
	s.sched.added(f)
	return f, nil
}

// speed draws an instance's own speed factor.
func (s *sim) speed() float64 {
	if sigma := s.cfg.Speeds.InstanceSigma; sigma > 0 {
		return math.Exp(sigma * s.rng.NormFloat64())
	}
	return 1
}
