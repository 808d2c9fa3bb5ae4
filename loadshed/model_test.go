package loadshed

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// This file is a deterministic, virtual-time queueing model of a server:
// c servers behind one FIFO queue, exponential service times, open-loop
// Poisson arrivals from several callers. A Shedder, when given, decides
// admission at each arrival; admitted requests queue, call Started when a
// server takes them and Done when they finish. Clients give up after a
// timeout, but the server, not told, still serves what it admitted: that
// wasted work is what makes an unprotected server collapse.

// stream is one caller's arrivals: a Poisson process whose rate (requests
// per second) may change over time.
type stream struct {
	caller   string
	priority Priority
	rate     func(t time.Duration) float64
}

func constant(r float64) func(time.Duration) float64 { return func(time.Duration) float64 { return r } }

type model struct {
	servers  int
	service  time.Duration // mean service time
	scale    func(t time.Duration) float64
	duration time.Duration
	warmup   time.Duration // excluded from the results
	timeout  time.Duration // a request slower than this is not goodput
	seed     uint64
	streams  []stream
	shed     *Shedder // nil: admit everything
	// interval, when set, records the shedder's state at each multiple.
	interval time.Duration
	// noStarted leaves queueing delays unreported (no Ticket.Started).
	noStarted bool
	// onAdmit, when set, sees every admission decision.
	onAdmit func(at time.Duration, s *stream, err error)
}

// result holds what the model measured after the warm-up.
type result struct {
	offered, admitted, shed, completed, good int
	perCaller                                map[string]*callerResult
	perPriority                              map[Priority]*callerResult
	latencies                                []time.Duration // of admitted requests that completed
	seconds                                  float64         // measured time
	capacity                                 float64         // requests per second the servers can do
	timeline                                 []sample
}

type callerResult struct {
	offered, admitted, shed, completed int
	reasons                            map[Reason]int
}

type sample struct {
	at       time.Duration
	shedding bool
	limit    int
	inFlight int
	shedFrac float64 // fraction of arrivals shed since the previous sample
}

func (r *result) goodput() float64 { return float64(r.good) / r.seconds / r.capacity }

func (r *result) p99() time.Duration { return percentile(r.latencies, 0.99) }

func (cr *callerResult) success() float64 {
	if cr.offered == 0 {
		return 1
	}
	return float64(cr.admitted) / float64(cr.offered)
}

func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(int(math.Ceil(p*float64(len(s))))-1, len(s)-1)]
}

type eventKind uint8

const (
	arrival eventKind = iota
	departure
	tick
)

type event struct {
	at   time.Duration
	kind eventKind
	idx  int // stream for an arrival; request for a departure
	seq  int // breaks ties deterministically
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type request struct {
	stream  int
	arrived time.Duration
	ticket  Ticket
}

// epoch is the virtual clock's origin; any time works.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (m model) run() *result {
	rng := rand.New(rand.NewPCG(m.seed, 0x5eed))
	res := &result{
		perCaller:   map[string]*callerResult{},
		perPriority: map[Priority]*callerResult{},
		seconds:     (m.duration - m.warmup).Seconds(),
		capacity:    float64(m.servers) / m.service.Seconds(),
	}
	var (
		q        events
		seq      int
		reqs     []request
		waiting  []int // FIFO of request indexes
		idle     = m.servers
		lastShed int
		lastArr  int
	)
	push := func(e event) {
		seq++
		e.seq = seq
		heap.Push(&q, e)
	}
	nextArrival := func(i int, now time.Duration) {
		r := m.streams[i].rate(now)
		if r <= 0 {
			// Look again a little later, when the rate may have changed.
			push(event{at: now + 10*time.Millisecond, kind: arrival, idx: -1 - i})
			return
		}
		gap := time.Duration(rng.ExpFloat64() / r * float64(time.Second))
		push(event{at: now + gap, kind: arrival, idx: i})
	}
	startService := func(id int, now time.Duration) {
		idle--
		if !m.noStarted {
			reqs[id].ticket.Started(epoch.Add(now))
		}
		d := rng.ExpFloat64() * float64(m.service)
		if m.scale != nil {
			d *= m.scale(now)
		}
		push(event{at: now + time.Duration(d), kind: departure, idx: id})
	}
	for i := range m.streams {
		nextArrival(i, 0)
	}
	if m.shed != nil {
		// Start the shedder's clock at 0 so that its control intervals
		// end exactly on the ticks below.
		m.shed.Tick(epoch)
	}
	if m.interval > 0 {
		push(event{at: m.interval, kind: tick})
	}
	counted := func(t time.Duration) bool { return t >= m.warmup }
	bucket := func(s *stream) (*callerResult, *callerResult) {
		c := res.perCaller[s.caller]
		if c == nil {
			c = &callerResult{}
			res.perCaller[s.caller] = c
		}
		p := res.perPriority[s.priority]
		if p == nil {
			p = &callerResult{}
			res.perPriority[s.priority] = p
		}
		return c, p
	}
	var arrivals, sheds int
	for q.Len() > 0 {
		e := heap.Pop(&q).(event)
		if e.at > m.duration {
			break
		}
		now := epoch.Add(e.at)
		switch e.kind {
		case tick:
			frac := 0.0
			if n := arrivals - lastArr; n > 0 {
				frac = float64(sheds-lastShed) / float64(n)
			}
			lastArr, lastShed = arrivals, sheds
			s := sample{at: e.at, shedFrac: frac}
			if m.shed != nil {
				m.shed.Tick(now)
				s.shedding, s.limit, s.inFlight = m.shed.Shedding(), m.shed.Limit(), m.shed.InFlight()
			}
			res.timeline = append(res.timeline, s)
			push(event{at: e.at + m.interval, kind: tick})
		case arrival:
			if e.idx < 0 {
				nextArrival(-1-e.idx, e.at)
				continue
			}
			st := &m.streams[e.idx]
			nextArrival(e.idx, e.at)
			arrivals++
			c, p := bucket(st)
			if counted(e.at) {
				res.offered++
				c.offered++
				p.offered++
			}
			var tk Ticket
			if m.shed != nil {
				var err error
				tk, err = m.shed.Admit(now, st.caller, st.priority)
				if m.onAdmit != nil {
					m.onAdmit(e.at, st, err)
				}
				if err != nil {
					sheds++
					if counted(e.at) {
						res.shed++
						c.shed++
						p.shed++
						if c.reasons == nil {
							c.reasons = map[Reason]int{}
						}
						c.reasons[err.(*ShedError).Reason]++
					}
					continue
				}
			}
			if counted(e.at) {
				res.admitted++
				c.admitted++
				p.admitted++
			}
			reqs = append(reqs, request{stream: e.idx, arrived: e.at, ticket: tk})
			id := len(reqs) - 1
			if idle > 0 {
				startService(id, e.at)
			} else {
				waiting = append(waiting, id)
			}
		case departure:
			r := &reqs[e.idx]
			r.ticket.Done(now, Success)
			idle++
			if counted(r.arrived) {
				lat := e.at - r.arrived
				res.completed++
				res.perCaller[m.streams[r.stream].caller].completed++
				res.perPriority[m.streams[r.stream].priority].completed++
				res.latencies = append(res.latencies, lat)
				if lat <= m.timeout {
					res.good++
				}
			}
			if len(waiting) > 0 {
				id := waiting[0]
				waiting = waiting[1:]
				startService(id, e.at)
			}
		}
	}
	// Requests still unfinished at the end waited at least until then: count
	// that as their latency, or a collapsed server would show no latency.
	for _, id := range waiting {
		if r := reqs[id]; counted(r.arrived) {
			res.latencies = append(res.latencies, m.duration-r.arrived)
		}
	}
	return res
}
