package concurrency

import (
	"fmt"
	"sync/atomic"
)

// Mode says how many requests one instance serves at once.
type Mode uint8

const (
	// Shared lets an instance serve up to its limit of requests at once.
	Shared Mode = iota
	// Exclusive dedicates an instance to one request at a time, whatever
	// the configured limit (for functions that are not reentrant or that
	// need the whole sandbox).
	Exclusive
)

// String returns "shared" or "exclusive".
func (m Mode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	default:
		return fmt.Sprintf("Mode(%d)", uint8(m))
	}
}

// Slots counts the requests in flight on one instance against its limit.
//
// The count and the limit share one 64-bit word (limit in the high half,
// in-flight count in the low half), so TryAcquire is a single
// compare-and-swap that can never admit more than the limit in force at that
// instant, even while SetLimit changes it. The zero value has a limit of 0
// and admits nothing; use [NewSlots]. Slots must not be copied after first
// use.
type Slots struct {
	word atomic.Uint64
	// exclusive pins the limit to 1; it is set by NewSlots and never
	// changes, so SetLimit reads it without synchronisation.
	exclusive bool
	// The router keeps one Slots per instance and many goroutines update
	// neighbouring instances at once: padding each to a cache line keeps
	// their counters from sharing one (false sharing).
	_ [cacheLine - 16]byte
}

const cacheLine = 64

// MaxLimit is the largest limit Slots accepts.
const MaxLimit = 1<<31 - 1

// NewSlots returns Slots with the given limit for mode. In Exclusive mode the
// limit is 1 whatever limit says. A limit below 1 is raised to 1 and one
// above MaxLimit lowered to it; callers validate configuration before this.
func NewSlots(mode Mode, limit int) *Slots {
	s := &Slots{exclusive: mode == Exclusive}
	if s.exclusive {
		limit = 1
	}
	s.word.Store(pack(clampLimit(limit), 0))
	return s
}

func clampLimit(n int) uint32 {
	return uint32(min(max(n, 1), MaxLimit))
}

func pack(limit, inFlight uint32) uint64 { return uint64(limit)<<32 | uint64(inFlight) }

func unpack(w uint64) (limit, inFlight uint32) { return uint32(w >> 32), uint32(w) }

// TryAcquire takes a slot if one is free and reports whether it did. It
// never blocks and never allocates.
func (s *Slots) TryAcquire() bool {
	for {
		w := s.word.Load()
		limit, n := unpack(w)
		if n >= limit {
			return false
		}
		if s.word.CompareAndSwap(w, w+1) {
			return true
		}
	}
}

// Release returns a slot taken by TryAcquire. Releasing more slots than are
// held is a bug in the caller that would silently raise the instance's
// capacity, so Release panics instead.
func (s *Slots) Release() {
	for {
		w := s.word.Load()
		_, n := unpack(w)
		if n == 0 {
			panic("concurrency: Slots.Release without a matching TryAcquire")
		}
		if s.word.CompareAndSwap(w, w-1) {
			return
		}
	}
}

// InFlight returns the number of slots held.
func (s *Slots) InFlight() int {
	_, n := unpack(s.word.Load())
	return int(n)
}

// Counts returns the in-flight count and the limit read together in one
// atomic load, so that a policy comparing utilizations never sees a count
// from before a SetLimit and a limit from after it.
func (s *Slots) Counts() (inFlight, limit int) {
	l, n := unpack(s.word.Load())
	return int(n), int(l)
}

// Limit returns the current limit.
func (s *Slots) Limit() int {
	l, _ := unpack(s.word.Load())
	return int(l)
}

// Free returns the number of slots that TryAcquire could take now (zero when
// a lowered limit is below the count in flight).
func (s *Slots) Free() int {
	l, n := unpack(s.word.Load())
	if n >= l {
		return 0
	}
	return int(l - n)
}

// Utilization returns in-flight / limit, the measure the router's policies
// compare; it may exceed 1 after the limit was lowered. The zero value, which
// has no capacity, reports 1 (full) rather than NaN so that comparisons stay
// meaningful.
func (s *Slots) Utilization() float64 {
	l, n := unpack(s.word.Load())
	if l == 0 {
		return max(1, float64(n))
	}
	return float64(n) / float64(l)
}

// SetLimit changes the limit at run time (clamped to [1, MaxLimit]).
// Requests already in flight keep their slots; when the new limit is below
// the count in flight, TryAcquire fails until enough are released. Slots
// created in Exclusive mode keep their limit of 1 whatever limit says.
func (s *Slots) SetLimit(limit int) {
	if s.exclusive {
		limit = 1
	}
	l := clampLimit(limit)
	for {
		w := s.word.Load()
		_, n := unpack(w)
		if s.word.CompareAndSwap(w, pack(l, n)) {
			return
		}
	}
}
