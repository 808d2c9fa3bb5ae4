package loadshed

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// account is one caller's accounting. The atomics are written on the hot
// path; the rest belongs to the control step.
type account struct {
	// word packs, from the top: arrivals this interval (20 bits),
	// admissions this interval (20 bits), requests in flight (24 bits), so
	// that an admission is one atomic add. The control step takes the
	// counts out with a compare-and-swap that keeps the count in flight.
	word atomic.Uint64
	// limited: the caller wants more than the fair share, so it is held
	// to it while shedding. A caller that wants less is never refused
	// for the random swings of its own count around its demand.
	limited atomic.Bool
	demand  float64 // the last estimate

	held float64  // moving average of inFlight, sampled every interval
	ring []bucket // the sliding window of counts
	pos  int      // the bucket being filled
	fill int      // intervals added to it
	win  bucket   // the sum of ring
}

type bucket struct{ arrivals, admitted int64 }

const (
	inFlightBits = 24
	admitBit     = 1 << inFlightBits
	arrivalBit   = 1 << (inFlightBits + 20)
	inFlightMask = admitBit - 1
	countMask    = 1<<20 - 1
)

// inFlight returns the caller's requests in flight.
func (a *account) inFlight() int64 { return int64(a.word.Load() & inFlightMask) }

// take returns and clears the interval's counts, keeping the count in
// flight.
func (a *account) take() (arrivals, admitted, inFlight int64) {
	for {
		w := a.word.Load()
		if a.word.CompareAndSwap(w, w&inFlightMask) {
			return int64(w >> (inFlightBits + 20)), int64(w >> inFlightBits & countMask), int64(w & inFlightMask)
		}
	}
}

// demand estimates the concurrency the caller would hold if every request
// of it were admitted: the average it holds, scaled by arrivals / admitted
// over the window. A caller refused everything wants more than anyone can
// give it.
func (a *account) estimate() float64 {
	if a.win.admitted == 0 {
		if a.win.arrivals > 0 {
			return math.Inf(1)
		}
		return a.held
	}
	return a.held * float64(a.win.arrivals) / float64(a.win.admitted)
}

// accounts maps callers to their accounts. Lookups read an immutable map
// through an atomic pointer; a new caller goes to a small map under a
// mutex until the next control step publishes a new snapshot.
type accounts struct {
	snap    atomic.Pointer[map[string]*account]
	mu      sync.Mutex
	pending map[string]*account
	n       int // accounts in snap and pending
	max     int
	buckets int      // in the window
	per     int      // intervals per bucket
	alpha   float64  // weight of one sample in held
	other   *account // shared by the callers beyond max
	demands []float64
}

// init sizes the window: window intervals in at most 10 buckets; held
// averages over a quarter of the window.
func (c *accounts) init(maxCallers, window int) {
	c.max = maxCallers
	c.buckets = min(window, 10)
	c.per = window / c.buckets
	c.alpha = 1 - math.Exp(-4/float64(window))
	c.pending = make(map[string]*account)
	c.other = c.newAccount()
	empty := map[string]*account{}
	c.snap.Store(&empty)
}

func (c *accounts) newAccount() *account { return &account{ring: make([]bucket, c.buckets)} }

func (c *accounts) lookup(name string) *account {
	if a, ok := (*c.snap.Load())[name]; ok {
		return a
	}
	return c.lookupSlow(name)
}

func (c *accounts) lookupSlow(name string) *account {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.pending[name]; ok {
		return a
	}
	if a, ok := (*c.snap.Load())[name]; ok { // published meanwhile
		return a
	}
	if c.n >= c.max {
		return c.other
	}
	a := c.newAccount()
	c.pending[strings.Clone(name)] = a // name may point into a request's buffer
	c.n++
	return a
}

func (c *accounts) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// rotate closes the interval(s) that ended for every account, drops the
// accounts idle for a whole window, publishes the new snapshot and returns
// the max-min fair share of limit given the callers' demands. ended is the
// number of intervals that ended (the ones after the first were empty).
func (c *accounts) rotate(ended int, limit float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The weight of this sample in each caller's moving average, for all
	// the intervals that ended.
	weight := 1 - math.Pow(1-c.alpha, float64(ended))
	old := *c.snap.Load()
	c.demands = c.demands[:0]
	var keep map[string]*account // the next snapshot, when it changes
	if len(c.pending) > 0 {
		keep = make(map[string]*account, len(old)+len(c.pending))
	}
	for name, a := range old {
		keep = c.visit(name, a, ended, weight, old, keep)
	}
	for name, a := range c.pending {
		keep = c.visit(name, a, ended, weight, old, keep)
	}
	c.close(c.other, ended, weight)
	c.other.demand = c.other.estimate()
	if c.other.win.arrivals > 0 {
		c.demands = append(c.demands, c.other.demand)
	}
	if keep != nil {
		next := keep // only a published snapshot escapes to the heap
		c.snap.Store(&next)
		clear(c.pending)
	}
	level := fairShare(c.demands, limit)
	for _, a := range *c.snap.Load() {
		a.limited.Store(a.demand > level)
	}
	c.other.limited.Store(c.other.demand > level)
	return level
}

// visit closes one account's interval and records its demand, or drops
// it from keep (a copy of old, made on the first drop) when it was idle
// for a whole window. A request admitted just now through the old
// snapshot keeps the dropped account; only the next request of that
// caller starts a new one.
func (c *accounts) visit(name string, a *account, ended int, weight float64, old, keep map[string]*account) map[string]*account {
	if inFlight := c.close(a, ended, weight); a.win.arrivals == 0 && inFlight == 0 {
		if keep == nil {
			keep = make(map[string]*account, len(old))
			for n, b := range old {
				keep[n] = b
			}
		}
		delete(keep, name)
		c.n--
		return keep
	}
	if keep != nil {
		keep[name] = a
	}
	a.demand = a.estimate()
	c.demands = append(c.demands, a.demand)
	return keep
}

// close adds the interval's counters to the window, samples the count in
// flight and returns it.
func (c *accounts) close(a *account, ended int, weight float64) int64 {
	arrivals, admitted, n := a.take()
	a.held += weight * (float64(n) - a.held)
	b := bucket{arrivals: arrivals, admitted: admitted}
	for i := range min(ended, len(a.ring)*c.per) {
		if i > 0 {
			b = bucket{}
		}
		if a.fill == c.per { // the bucket is full: reuse the oldest
			a.pos = (a.pos + 1) % len(a.ring)
			a.win.arrivals -= a.ring[a.pos].arrivals
			a.win.admitted -= a.ring[a.pos].admitted
			a.ring[a.pos], a.fill = bucket{}, 0
		}
		a.ring[a.pos].arrivals += b.arrivals
		a.ring[a.pos].admitted += b.admitted
		a.win.arrivals += b.arrivals
		a.win.admitted += b.admitted
		a.fill++
	}
	return n
}

// fairShare returns the max-min fair share ("water level") of capacity
// among demands: the level L at which Σ min(dᵢ, L) = capacity. Callers
// that want less than L get what they want; the others get L each. It
// returns +Inf when all demands fit. It sorts demands in place.
func fairShare(demands []float64, capacity float64) float64 {
	slices.Sort(demands)
	remaining := capacity
	for i, d := range demands {
		k := float64(len(demands) - i)
		if d*k > remaining {
			return max(remaining, 0) / k
		}
		remaining -= d
	}
	return math.Inf(1)
}
