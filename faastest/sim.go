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
// arrivals go back in time.
var ErrWorkload = errors.New("faastest: bad workload")

// Run simulates the workload under cfg on a virtual clock and returns the
// report. Everything happens on the calling goroutine, in virtual-time
// order, with every random choice drawn from generators seeded from
// cfg.Seed: the same config, workload and seed give the same report, bit
// for bit. Run returns an error wrapping ErrConfig for an invalid config or
// a policy constructor's error, and one wrapping ErrWorkload when an
// arrival comes before the previous one.
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
	ticks        int64 // scaling ticks so far
	dormantEvery int64 // dormant functions decide every this many ticks

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

type evKind uint8

const (
	evComplete evKind = iota + 1
	evQueueTimeout
	evColdReady
	evPodCreated
	evScaleTick
	evPoolTick
)

// event is one entry of the event queue. Only the pointer its kind needs
// is set; gen guards against a request recycled since the event was
// scheduled.
type event struct {
	at   int64
	seq  uint64
	aux  int64
	req  *request
	cs   *coldStart
	pool *pool
	gen  uint32
	kind evKind
}

// eventHeap is a binary min-heap on (at, seq): ties go in scheduling
// order, which keeps runs deterministic.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = event{}
	q = q[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

func (s *sim) schedule(e event) {
	s.seq++
	e.seq = s.seq
	s.events.push(e)
}

// fifo is a ring buffer queue.
type fifo[T any] struct {
	buf  []T
	head int
	n    int
}

func (q *fifo[T]) len() int { return q.n }

func (q *fifo[T]) push(v T) {
	if q.n == len(q.buf) {
		grown := make([]T, max(8, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.n == 0 {
		return zero, false
	}
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return v, true
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
		Policy:  cfg.Policy,
		Rand:    rand.NewPCG(cfg.Seed^0x5851f42d4c957f2d, cfg.Seed+0x14057b7ef767814f),
		Handoff: s.handoff,
	})
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
			s.giveUp(r, outcomeTimedOut)
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

// timeline samples the run's state at regular virtual times, doubling its
// step (and merging pairs of points) whenever it would exceed
// MaxTimelinePoints.
type timeline struct {
	step   int64
	next   int64
	cold   int // cold starts since the last point
	points []TimelinePoint
}

// sample records a point for every sampling time up to and including t,
// with the state that held before t.
func (tl *timeline) sample(s *sim, t int64) {
	for tl.next <= t {
		p := TimelinePoint{
			T:          time.Duration(tl.next),
			Instances:  s.total.alive,
			Idle:       s.total.idle,
			InFlight:   s.held,
			Queued:     s.queued,
			ColdStarts: tl.cold,
		}
		for _, pl := range s.pools {
			p.IdlePods += len(pl.idle)
		}
		tl.cold = 0
		tl.points = append(tl.points, p)
		tl.next += tl.step
		if len(tl.points) >= MaxTimelinePoints {
			tl.compact()
		}
	}
}

// compact merges pairs of points: the later time, the larger level, the
// sum of the cold starts.
func (tl *timeline) compact() {
	pts := tl.points
	out := pts[:0]
	for i := 0; i+1 < len(pts); i += 2 {
		a, b := pts[i], pts[i+1]
		out = append(out, TimelinePoint{
			T:          b.T,
			Instances:  max(a.Instances, b.Instances),
			Idle:       max(a.Idle, b.Idle),
			InFlight:   max(a.InFlight, b.InFlight),
			Queued:     max(a.Queued, b.Queued),
			IdlePods:   max(a.IdlePods, b.IdlePods),
			ColdStarts: a.ColdStarts + b.ColdStarts,
		})
	}
	if len(pts)%2 == 1 {
		last := pts[len(pts)-1]
		out = append(out, last)
	}
	tl.points = out
	tl.step *= 2
	tl.next = int64(tl.points[len(tl.points)-1].T) + tl.step
}
