package faastest

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// pool is the warm pool of one runtime: idle generic pods, creations in
// flight, and cold starts waiting for a pod. It follows warmpool.Manager:
// the sizing policy sets the target, every take and every waiting cold
// start triggers creations (target + waiters - idle - creating), within a
// global bound on creations in flight, and a new pod goes to the oldest
// waiter first.
type pool struct {
	name     string
	spec     RuntimeSpec
	sizing   warmpool.SizingPolicy
	target   int
	idle     []idlePod // oldest first
	creating int
	waiters  fifo[*coldStart]
	acct     acct // alive = idle pods
	created  int64
	taken    int64
}

type idlePod struct {
	node  *node
	since int64
}

// node is a machine pods run on, with its code cache.
type node struct {
	name  string
	cache *byteLRU
}

// byteLRU is a cache of code packages by function ID with a byte budget
// and least-recently-used eviction, like code.DiskCache.
type byteLRU struct {
	lru    *simplelru.LRU[string, int64]
	bytes  int64
	budget int64
}

func newByteLRU(budget int64) *byteLRU {
	l, _ := simplelru.NewLRU[string, int64](math.MaxInt32, nil) // size > 0 never fails
	return &byteLRU{lru: l, budget: budget}
}

func (c *byteLRU) has(key string) bool { return c.lru.Contains(key) }

// hit reports whether key is cached and marks it used.
func (c *byteLRU) hit(key string) bool {
	_, ok := c.lru.Get(key)
	return ok
}

// add caches key, evicting the least recently used beyond the budget; a
// package larger than the budget is not cached.
func (c *byteLRU) add(key string, size int64) {
	if size > c.budget || c.lru.Contains(key) {
		return
	}
	c.lru.Add(key, size)
	c.bytes += size
	for c.bytes > c.budget {
		_, v, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.bytes -= v
	}
}

// Code fetch tiers.
const (
	tierLocal = iota
	tierShared
	tierOrigin
)

// coldStart is one cold start, from the scaling decision that asked for it
// to the Ready instance.
type coldStart struct {
	fn        *function
	requested int64 // asked for by the scaling decision
	began     int64 // past the MaxColdStarts gate
	podAt     int64 // got its pod
	fetched   int64 // code fetched
	loaded    int64 // process started
	node      *node
	tier      int
}

// startCold asks for one cold start of f.
func (s *sim) startCold(f *function) {
	f.starting++
	s.coldActive++
	s.tl.cold++
	cs := &coldStart{fn: f, requested: s.now}
	if s.coldRunning < s.cfg.MaxColdStarts {
		s.beginCold(cs)
	} else {
		s.coldWait.push(cs)
	}
}

func (s *sim) beginCold(cs *coldStart) {
	s.coldRunning++
	cs.began = s.now
	p := cs.fn.pool
	if n := p.take(s, cs.fn.spec.ID); n != nil {
		s.podAcquired(cs, n)
	} else {
		p.waiters.push(cs)
	}
	s.replenish()
}

// take hands out an idle pod, preferring one on a node that caches the
// function's code (as a warmpool.Preference would), the oldest otherwise.
func (p *pool) take(s *sim, fn string) *node {
	if len(p.idle) == 0 {
		return nil
	}
	i := slices.IndexFunc(p.idle, func(ip idlePod) bool { return ip.node.cache.has(fn) })
	i = max(i, 0)
	n := p.idle[i].node
	p.idle = slices.Delete(p.idle, i, i+1)
	p.acct.add(s.now, -1, -1)
	if s.warm {
		p.taken++
	}
	p.sizing.ObserveTake(s.time())
	return n
}

// podAcquired runs the rest of a cold start on a pod of node: fetch the
// code through the tiers, start the process, run the init hook.
func (s *sim) podAcquired(cs *coldStart, n *node) {
	f := cs.fn
	cs.podAt, cs.node = s.now, n
	s.account(f, 1, 0) // the pod is the function's from now on
	var fetch time.Duration
	cs.tier, fetch = s.fetch(f, n)
	load := sample(f.spec.Load, s.rng)
	init := sample(f.spec.Init, s.rng)
	cs.fetched = s.now + int64(fetch)
	cs.loaded = cs.fetched + int64(load)
	s.schedule(event{at: cs.loaded + int64(init), kind: evColdReady, cs: cs})
}

// fetch returns the tier f's code comes from on node n and the fetch's
// latency, and fills the tiers it missed.
func (s *sim) fetch(f *function, n *node) (int, time.Duration) {
	key, size := f.spec.ID, f.spec.CodeSize
	code := &s.cfg.Code
	cost := func(t Tier) time.Duration {
		d := sample(t.Latency, s.rng)
		if t.BytesPerSecond > 0 {
			d += time.Duration(float64(size) / t.BytesPerSecond * float64(time.Second))
		}
		return d
	}
	if n.cache.hit(key) {
		return tierLocal, cost(code.Local)
	}
	defer n.cache.add(key, size)
	if s.shared != nil && s.shared.hit(key) {
		return tierShared, cost(code.Shared)
	}
	if s.shared != nil {
		s.shared.add(key, size)
	}
	return tierOrigin, cost(code.Origin)
}

// coldReady makes the cold start's instance Ready: a lifecycle.Instance
// through its states, added to the router with its concurrency.Slots; the
// waiters get its capacity.
func (s *sim) coldReady(cs *coldStart) {
	f := cs.fn
	s.coldRunning--
	s.coldActive--
	f.starting--
	s.instSeq++
	id := f.spec.ID + "#" + strconv.Itoa(s.instSeq)
	li := lifecycle.NewInstance(lifecycle.Info{
		ID: id, FunctionID: f.spec.ID, PodID: "pod-" + strconv.Itoa(s.instSeq),
		Node: cs.node.name, Runtime: f.spec.Runtime,
	}, Epoch.Add(time.Duration(cs.requested)))
	at := func(t int64) time.Time { return Epoch.Add(time.Duration(t)) }
	_ = li.Transition(at(cs.podAt), lifecycle.Loading, "load")
	_ = li.Transition(at(cs.loaded), lifecycle.Loaded, "loaded")
	_ = li.Transition(s.time(), lifecycle.Ready, "initialized")
	slots := concurrency.NewSlots(concurrency.Shared, f.spec.Concurrency)
	inst := &instance{fn: f, li: li, slots: slots, node: cs.node, readyAt: s.now, lastUsed: s.now, idle: true}
	s.insts[li] = inst
	if err := s.router.Add(s.time(), li, slots, waiters{s, f}); err != nil {
		panic(fmt.Sprintf("faastest: router refused a fresh instance: %v", err)) // a bug of the simulator
	}
	f.ready = append(f.ready, inst)
	s.account(f, 0, 1)
	if s.warm {
		f.st.coldStart(cs, s.now)
	}
	s.dispatch(f)
	if cs, ok := s.coldWait.pop(); ok {
		s.beginCold(cs)
	}
}

// replenish starts the pod creations the pools need.
func (s *sim) replenish() {
	for _, p := range s.pools {
		deficit := p.target + p.waiters.len() - len(p.idle) - p.creating
		for ; deficit > 0 && s.creating < s.cfg.MaxParallelCreates; deficit-- {
			p.creating++
			s.creating++
			d := sample(p.spec.Create, s.rng)
			s.schedule(event{at: s.now + int64(d), kind: evPodCreated, pool: p, aux: int64(d)})
		}
	}
}

// podCreated places a new pod on the next node and gives it to the oldest
// waiting cold start, or to the pool.
func (s *sim) podCreated(p *pool, latency int64) {
	p.creating--
	s.creating--
	if s.warm {
		p.created++
	}
	p.sizing.ObserveCreate(s.time(), time.Duration(latency))
	n := s.nodes[s.nodeNext%len(s.nodes)]
	s.nodeNext++
	if cs, ok := p.waiters.pop(); ok {
		if s.warm {
			p.taken++
		}
		p.sizing.ObserveTake(s.time())
		s.podAcquired(cs, n)
	} else {
		p.idle = append(p.idle, idlePod{node: n, since: s.now})
		p.acct.add(s.now, 1, 1)
	}
	s.replenish()
}
