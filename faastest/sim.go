package faastest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// ErrWorkload is matched (errors.Is) by the error of a workload whose
// arrivals go back in time or name no function.
var ErrWorkload = errors.New("faastest: bad workload")

// Run simulates the workload under cfg on a virtual clock and returns the
// report. Everything happens on the calling goroutine, in virtual-time
// order, with every random choice drawn from generators seeded from
// cfg.Seed: the same config, workload and seed give the same report, bit
// for bit. Run returns an error wrapping ErrConfig for an invalid config or
// a policy constructor's error, and one wrapping ErrWorkload when an
// arrival comes before the previous one or names no function.
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

	seq          uint64
	events       eventHeap
	processed    int64
	ticks        int64                 // scaling ticks so far
	dormantEvery int64                 // dormant functions decide every this many ticks
	replicas     []concurrency.Replica // scratch of decide

	rng    *rand.Rand // cold-start steps, pod creation
	router *router.Router
	shed   *loadshed.Shedder

	fns       []*function
	byID      map[string]*function
	specs     map[string]FunctionSpec
	insts     map[*lifecycle.Instance]*instance
	instSeq   int
	pools     []*pool
	byRuntime map[string]*pool
	defaultRT string
	nodes     []*node
	shared    *byteLRU // nil: no shared tier
	nodeNext  int

	creating    int // pod creations in flight
	coldRunning int // cold starts past the MaxColdStarts gate
	coldActive  int // cold starts asked for and not Ready
	coldWait    fifo[*coldStart]
	held        int // requests holding a slot
	queued      int // requests waiting for a slot

	free  []*request
	total acct
	tl    timeline
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
		cfg:       cfg,
		warmUp:    int64(cfg.WarmUp),
		until:     int64(cfg.Until),
		warm:      cfg.WarmUp == 0,
		rng:       newRand(cfg.Seed),
		byID:      make(map[string]*function),
		specs:     make(map[string]FunctionSpec, len(cfg.Functions)),
		insts:     make(map[*lifecycle.Instance]*instance),
		byRuntime: make(map[string]*pool),
		tl:        timeline{step: int64(cfg.SampleEvery)},
	}
	s.dormantEvery = max(int64((cfg.DormantInterval+cfg.ScaleInterval/2)/cfg.ScaleInterval), 1)
	var err error
	s.router, err = router.New(router.Config{
		Policy: cfg.Policy,
		Rand:   rand.NewPCG(cfg.Seed^0x5851f42d4c957f2d, cfg.Seed+0x14057b7ef767814f),
	}, router.Hooks{})
	if err != nil {
		return nil, fmt.Errorf("%w: router: %w", ErrConfig, err)
	}
	if !cfg.NoShedding {
		if s.shed, err = cfg.Shedder(); err != nil {
			return nil, fmt.Errorf("%w: shedder: %w", ErrConfig, err)
		}
	}
	names := slices.Sorted(maps.Keys(cfg.Runtimes))
	s.defaultRT = names[0]
	for _, name := range names {
		rs := cfg.Runtimes[name]
		rc := warmpool.RuntimeConfig{Min: rs.Min, Max: rs.Max}
		sz, err := cfg.Sizing(name, rc)
		if err != nil {
			return nil, fmt.Errorf("%w: sizing policy of runtime %q: %w", ErrConfig, name, err)
		}
		p := &pool{name: name, spec: rs, sizing: sz}
		s.pools = append(s.pools, p)
		s.byRuntime[name] = p
	}
	for i := range cfg.Code.Nodes {
		s.nodes = append(s.nodes, &node{name: fmt.Sprintf("node-%d", i), cache: newByteLRU(cfg.Code.NodeCacheBytes)})
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
// holding or waiting for a slot, and cold starts.
func (s *sim) busy() bool { return s.held > 0 || s.queued > 0 || s.coldActive > 0 }

func (s *sim) run(w Workload) error {
	for _, p := range s.pools {
		p.target = p.sizing.Target(s.time())
	}
	s.replenish()
	for _, f := range s.fns {
		s.decide(f)
	}
	s.schedule(event{at: int64(s.cfg.ScaleInterval), kind: evScaleTick})
	s.schedule(event{at: int64(s.cfg.PoolInterval), kind: evPoolTick})
	a, more := w.Next()
	for {
		next := s.events[0].at // the ticks are always scheduled
		if more && int64(a.At) <= next {
			if int64(a.At) < s.now {
				return fmt.Errorf("%w: arrival for %q at %v comes after one at %v", ErrWorkload, a.Function, a.At, time.Duration(s.now))
			}
			s.advance(int64(a.At))
			if err := s.arrive(a); err != nil {
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
		for _, p := range s.pools {
			p.acct.restart(s.now)
		}
	}
	s.tl.sample(s, t)
	s.now = t
}

func (s *sim) handle(e event) {
	switch e.kind {
	case evComplete:
		s.complete(e.req)
	case evQueueTimeout:
		if r := e.req; r.gen == e.gen && r.state == stQueued {
			s.giveUp(r)
		}
	case evColdReady:
		s.coldReady(e.cs)
	case evPodCreated:
		s.podCreated(e.pool, e.aux)
	case evScaleTick:
		if s.shed != nil {
			s.shed.Tick(s.time())
		}
		s.ticks++
		dormantToo := s.ticks%s.dormantEvery == 0
		for _, f := range s.fns {
			if dormantToo || !f.dormant() {
				s.decide(f)
			}
		}
		s.schedule(event{at: s.now + int64(s.cfg.ScaleInterval), kind: evScaleTick})
	case evPoolTick:
		for _, p := range s.pools {
			p.target = p.sizing.Target(s.time())
		}
		s.replenish()
		s.schedule(event{at: s.now + int64(s.cfg.PoolInterval), kind: evPoolTick})
	}
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
	// Each function draws its service times from its own stream, so that
	// two configurations replaying one workload see the same demands.
	seed := s.cfg.Seed ^ uint64(len(s.fns)+1)*0x9e3779b97f4a7c15
	f := &function{spec: spec, rng: newRand(seed), scaler: scaler, meter: meter, pool: s.byRuntime[spec.Runtime]}
	f.acct.last = s.now
	s.fns = append(s.fns, f)
	s.byID[id] = f
	return f, nil
}
