package faastest

import (
	"math"
	"slices"
)

// scheduler decides which functions a scaling tick asks: the awake ones,
// in the order the functions appeared (which keeps runs deterministic and
// identical to asking every function). A function sleeps when asking it
// would change nothing: its policy promised its answer until a time
// (concurrency.Quiet), or it is dormant and dormant functions are asked
// only every DormantInterval. A request, or an instance it loses, wakes it
// for the next tick. A sleeping function costs nothing per tick, so a
// replay of a hundred thousand functions pays for those with traffic or a
// timer due, not for all of them.
type scheduler struct {
	awake        []*function // sorted by idx
	spare        []*function // the other buffer of awake
	woken        []*function // to join awake at the next tick
	sleepers     wakeHeap    // asleep until a time
	dormantEvery int64       // dormant functions decide every this many ticks
}

// Function scheduling states.
const (
	fnAwake   = iota // in awake, or in woken
	fnSleep          // in sleepers, until wakeAt
	fnDormant        // asleep until a request or an instance change
)

func (sc *scheduler) init(dormantEvery int64) { sc.dormantEvery = dormantEvery }

// added schedules a new function for the next tick.
func (sc *scheduler) added(f *function) {
	f.sched = fnAwake
	sc.woken = append(sc.woken, f)
}

// wake makes f decide at the next tick.
func (sc *scheduler) wake(f *function) {
	switch f.sched {
	case fnAwake:
		return
	case fnSleep:
		sc.sleepers.remove(f)
	}
	f.sched = fnAwake
	sc.woken = append(sc.woken, f)
}

// tick decides every awake function, after waking those whose time has
// come, and puts to sleep those that may sleep.
func (sc *scheduler) tick(s *sim) {
	for len(sc.sleepers) > 0 && sc.sleepers[0].wakeAt <= s.now {
		f := sc.sleepers.pop()
		f.sched = fnAwake
		sc.woken = append(sc.woken, f)
	}
	if len(sc.woken) > 0 {
		slices.SortFunc(sc.woken, func(a, b *function) int { return a.idx - b.idx })
		merged := mergeByIdx(sc.spare[:0], sc.awake, sc.woken)
		clear(sc.awake)
		sc.awake, sc.spare = merged, sc.awake[:0]
		clear(sc.woken)
		sc.woken = sc.woken[:0]
	}
	kept := sc.awake[:0]
	for _, f := range sc.awake {
		if f.sched != fnAwake { // woken twice: the later copy stays
			continue
		}
		if until, ok := s.decide(f); ok {
			sc.sleep(f, until)
			continue
		}
		kept = append(kept, f)
	}
	clear(sc.awake[len(kept):])
	sc.awake = kept
}

// sleep puts f to sleep until the tick at or after until (math.MaxInt64:
// until a request or an instance change), or until the next tick at which
// dormant functions decide.
func (sc *scheduler) sleep(f *function, until int64) {
	if until == math.MaxInt64 {
		f.sched = fnDormant
		return
	}
	f.sched, f.wakeAt = fnSleep, until
	sc.sleepers.push(f)
}

// nextDormantTick returns the time of the next tick at which dormant
// functions of a policy that makes no promise decide.
func (sc *scheduler) nextDormantTick(s *sim) int64 {
	k := (s.ticks/sc.dormantEvery + 1) * sc.dormantEvery
	return k * int64(s.cfg.ScaleInterval)
}

// mergeByIdx appends to out the merge of two lists sorted by idx,
// dropping duplicates.
func mergeByIdx(out, a, b []*function) []*function {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].idx < b[j].idx):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].idx < a[i].idx:
			out = append(out, b[j])
			j++
		default: // the same function
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// wakeHeap is a min-heap of sleeping functions by wake time (then idx,
// for a deterministic order); each function knows its index in it.
type wakeHeap []*function

func (h wakeHeap) less(i, j int) bool {
	return h[i].wakeAt < h[j].wakeAt || (h[i].wakeAt == h[j].wakeAt && h[i].idx < h[j].idx)
}

func (h wakeHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heap, h[j].heap = i, j
}

func (h *wakeHeap) push(f *function) {
	f.heap = len(*h)
	*h = append(*h, f)
	h.up(f.heap)
}

func (h *wakeHeap) pop() *function {
	f := (*h)[0]
	h.remove(f)
	return f
}

func (h *wakeHeap) remove(f *function) {
	i, n := f.heap, len(*h)-1
	if i != n {
		h.swap(i, n)
	}
	(*h)[n] = nil
	*h = (*h)[:n]
	f.heap = -1
	if i < n {
		h.down(i)
		h.up(i)
	}
}

func (h wakeHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h wakeHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

// toTick rounds a virtual time up to the scaling tick at or after it.
func toTick(t, interval int64) int64 { return (t + interval - 1) / interval * interval }
