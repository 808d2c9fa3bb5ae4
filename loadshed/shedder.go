package loadshed

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Shedder decides which requests a server admits. [Shedder.Admit] is the
// hot path: lock-free, allocation-free, a handful of atomic operations. The
// detector and the accounting advance in a control step that runs at most
// once per Interval, on whichever call first sees the interval end (or on
// [Shedder.Tick]); it costs O(callers), about 40 µs per thousand callers,
// and a shell that wants it off the request path calls Tick from a ticker
// every Interval. A Shedder reads no clock and starts
// no goroutine, so a simulator drives it on virtual time. All methods are safe for concurrent
// use; times passed to them should not go backwards by more than a few
// intervals.
type Shedder struct {
	// Read on every call, written once per interval at most.
	shedding atomic.Bool
	limit    atomic.Int64  // the effective concurrency limit
	level    atomic.Uint64 // float64 bits: the fair share; +Inf when nobody is over it
	next     atomic.Int64  // end of the current interval, ns since base
	based    atomic.Bool
	_        [cacheLine]byte

	// Written on every call.
	inFlight   atomic.Int64
	arrivals   atomic.Uint64 // this interval: count<<40 | sum of in-flight seen on arrival
	completed  atomic.Uint64 // this interval: count<<40 | sum of latencies in µs
	service    atomic.Uint64 // this interval: sum of latencies less queueing delays, µs
	drops      atomic.Int64  // this interval: Dropped outcomes
	minSojourn atomic.Int64  // this interval: least queueing delay reported, ns
	waits      atomic.Bool   // Started was ever called
	_          [cacheLine]byte

	cfg      Config
	base     time.Time // set once, before based is stored
	interval int64
	coolOff  int64
	target   int64 // CoDel target, ns; 0 when disabled
	burst    float64
	errs     [ReasonPriority + 1]*ShedError

	ctl      sync.Mutex // the control step; guards what follows
	grad     *gradient
	on       bool
	lastOver int64
	flips    int
	accounts accounts
}

const (
	cacheLine = 64
	countBit  = 1 << 40
	sumMask   = countBit - 1
)

// New returns a Shedder. It returns an error wrapping [ErrInvalidConfig]
// for a setting out of range.
func New(cfg Config) (*Shedder, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	s := &Shedder{
		cfg:      cfg,
		interval: int64(cfg.Interval),
		coolOff:  int64(cfg.CoolOff),
		target:   max(int64(cfg.QueueDelayTarget), 0),
		burst:    cfg.Burst,
	}
	for r := ReasonOverload; r <= ReasonPriority; r++ {
		s.errs[r] = newShedError(r, cfg.RetryAfter)
	}
	limit := cfg.Capacity
	if cfg.Adaptive.Enabled {
		s.grad = newGradient(cfg.Adaptive)
		limit = s.grad.Limit()
	}
	s.limit.Store(int64(limit))
	s.level.Store(math.Float64bits(math.Inf(1)))
	s.minSojourn.Store(math.MaxInt64)
	s.accounts.init(cfg.MaxCallers, int(cfg.Window/cfg.Interval))
	return s, nil
}

// Ticket is an admitted request's receipt. Call [Ticket.Done] exactly once
// when the request ends; [Ticket.Started], optionally, when it stops
// waiting. A Ticket is a small value: keep it in a variable, do not copy it
// to call Done twice.
type Ticket struct {
	s     *Shedder
	c     *account
	start int64 // ns since the Shedder's base
	wait  int64 // queueing delay reported by Started, ns
}

// Admit decides whether to admit a request from caller (a client's name,
// or the function ID when there is none) with priority p at time now. It
// returns a Ticket, or an error that is a *[ShedError] matching
// [ErrShed]. It never blocks and does not allocate (except the first time
// a caller is seen).
//
// While the detector reports overload: Sheddable requests are refused;
// Default requests are refused when their caller wants more than its
// max-min fair share of the limit and already holds that share, and
// otherwise when the server holds more than limit × (1 + Burst); Critical
// requests skip the fair-share check and are refused only above limit ×
// (1 + 2 × Burst). The checks are
// made without a lock, so concurrent admissions may overshoot a bound by
// the number of goroutines racing.
func (s *Shedder) Admit(now time.Time, caller string, p Priority) (Ticket, error) {
	t := s.since(now)
	if t >= s.next.Load() {
		s.control(now, t)
	}
	c := s.accounts.lookup(caller)
	n := s.inFlight.Load()
	s.arrivals.Add(countBit | uint64(max(n, 0)))
	if s.shedding.Load() {
		if r := s.refuse(c, n, p); r != 0 {
			c.word.Add(arrivalBit)
			return Ticket{}, s.errs[r]
		}
	}
	s.inFlight.Add(1)
	c.word.Add(arrivalBit | admitBit | 1)
	return Ticket{s: s, c: c, start: t}, nil
}

func (s *Shedder) refuse(c *account, n int64, p Priority) Reason {
	limit := float64(s.limit.Load())
	switch {
	case p <= Sheddable:
		return ReasonPriority
	case p >= Critical:
		if float64(n) >= limit*(1+2*s.burst) {
			return ReasonOverload
		}
		return 0
	}
	if c.limited.Load() {
		if level := math.Float64frombits(s.level.Load()); float64(c.inFlight()) >= level {
			if level < limit {
				return ReasonOverShare
			}
			return ReasonOverload // alone on the server: its share is all of it
		}
	}
	if float64(n) >= limit*(1+s.burst) {
		return ReasonOverload
	}
	return 0
}

// Started reports that the request stopped waiting and began to run (it
// got a slot on an instance) at now. The time since Admit is its queueing
// delay: it feeds the CoDel signal, and the adaptive limit subtracts it
// from the latency when it estimates the no-load latency. Without it, that
// estimate includes queueing and drifts up under sustained overload.
// Calling it is optional; call it at most once, before Done.
func (t *Ticket) Started(now time.Time) {
	s := t.s
	if s == nil {
		return
	}
	d := max(s.since(now)-t.start, 0)
	t.wait = d
	if !s.waits.Load() {
		s.waits.Store(true)
	}
	for cur := s.minSojourn.Load(); d < cur; cur = s.minSojourn.Load() {
		if s.minSojourn.CompareAndSwap(cur, d) {
			break
		}
	}
}

// Done reports that the request ended at now with outcome o. Its latency
// since Admit feeds the adaptive limit (for Success and Failure) and its
// caller's accounting. Done on a zero Ticket, or a second time on the same
// variable, does nothing.
func (t *Ticket) Done(now time.Time, o Outcome) {
	s := t.s
	if s == nil {
		return
	}
	t.s = nil
	tn := s.since(now)
	d := max(tn-t.start, 0)
	s.inFlight.Add(-1)
	t.c.word.Add(^uint64(0)) // -1 in the low field, which is ≥ 1
	switch o {
	case Success, Failure:
		s.completed.Add(countBit | uint64(d/1000))
		s.service.Add(uint64(max(d-t.wait, 0) / 1000))
	case Dropped:
		s.drops.Add(1)
	}
	if tn >= s.next.Load() {
		s.control(now, tn)
	}
}

// since returns now in nanoseconds since the first time the Shedder saw.
func (s *Shedder) since(now time.Time) int64 {
	if !s.based.Load() {
		s.ctl.Lock()
		if !s.based.Load() {
			s.base = now
			s.next.Store(s.interval)
			s.based.Store(true)
		}
		s.ctl.Unlock()
	}
	return int64(now.Sub(s.base))
}

// Tick runs the control step if an interval has ended by now, as Admit and
// Done do. A shell may call it from a ticker so that shedding can end, and
// Stats stay fresh, while no request arrives.
func (s *Shedder) Tick(now time.Time) {
	if t := s.since(now); t >= s.next.Load() {
		s.control(now, t)
	}
}

// Shedding reports whether the detector reports overload.
func (s *Shedder) Shedding() bool { return s.shedding.Load() }

// Limit returns the concurrency limit in force: Capacity, or the adaptive
// limit.
func (s *Shedder) Limit() int { return int(s.limit.Load()) }

// InFlight returns the number of admitted requests not yet done.
func (s *Shedder) InFlight() int { return int(s.inFlight.Load()) }

// Stats is a snapshot of a Shedder's state, for metrics and tests.
type Stats struct {
	// Shedding reports whether the detector reports overload.
	Shedding bool
	// Transitions counts the detector's switches on and off.
	Transitions int
	// Limit is the concurrency limit in force.
	Limit int
	// InFlight is the number of admitted requests not yet done.
	InFlight int
	// FairShare is the most a caller may hold in flight while shedding;
	// +Inf when no caller is limited.
	FairShare float64
	// NoLoadLatency is the adaptive limit's estimate of the latency
	// without queueing; zero before it has one or when it is off.
	NoLoadLatency time.Duration
	// Callers is the number of callers tracked one by one.
	Callers int
}

// Stats returns a snapshot of the Shedder's state.
func (s *Shedder) Stats() Stats {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	st := Stats{
		Shedding:    s.on,
		Transitions: s.flips,
		Limit:       int(s.limit.Load()),
		InFlight:    int(s.inFlight.Load()),
		FairShare:   math.Float64frombits(s.level.Load()),
		Callers:     s.accounts.len(),
	}
	if s.grad != nil {
		st.NoLoadLatency = s.grad.NoLoad()
	}
	return st
}
