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
	dp       *dataplane
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
	name   string
	cache  *byteLRU
	speed  float64
	down   bool
	epoch  int         // losses so far: a cold start begun before one fails
	insts  []*instance // its instances, in no particular order
	served int64       // invocations completed on it (after the warm-up)
	busyNs int64       // their execution time
}

func (n *node) add(inst *instance) {
	inst.nodeIdx = len(n.insts)
	n.insts = append(n.insts, inst)
}

// remove forgets inst; removing it twice is harmless.
func (n *node) remove(inst *instance) {
	i := inst.nodeIdx
	if i < 0 || i >= len(n.insts) || n.insts[i] != inst {
		return
	}
	last := len(n.insts) - 1
	n.insts[i] = n.insts[last]
	n.insts[i].nodeIdx = i
	n.insts[last] = nil
	n.insts = n.insts[:last]
	inst.nodeIdx = -1
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
	nodeEpoch int // the node's epoch when the pod was taken
	tier      int
	gated     bool // waited under MaxColdStarts
	waitedPod bool // waited for a pod
	throttled bool // ... while creations were at MaxParallelCreates
}

// startCold asks for one cold start of f.
func (s *sim) startCold(f *function) {
	f.starting++
	s.coldActive++
	s.tl.cold++
	cs := &coldStart{fn: f, requested: s.now}
	dp := f.dp
	if dp.coldRunning < s.cfg.MaxColdStarts {
		s.beginCold(cs)
	} else {
		cs.gated = true
		f.gated++
		dp.coldWait.push(cs)
	}
}

func (s *sim) beginCold(cs *coldStart) {
	f := cs.fn
	f.dp.coldRunning++
	if cs.gated {
		f.gated--
	}
	cs.began = s.now
	p := f.pool
	if n := p.take(s, f.spec.ID); n != nil {
		s.podAcquired(cs, n)
		s.replenish()
		return
	}
	cs.waitedPod = true
	f.podWait++
	p.waiters.push(cs)
	s.replenish()
	if p.dp.creating >= s.cfg.MaxParallelCreates {
		cs.throttled = true // its pod waits for a creation slot, not only a creation
	}
}

// dropNode forgets the idle pods on a lost node.
func (p *pool) dropNode(s *sim, n *node) {
	kept := p.idle[:0]
	for _, ip := range p.idle {
		if ip.node == n {
			p.acct.add(s.now, -1, -1)
			continue
		}
		kept = append(kept, ip)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
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
	if cs.waitedPod {
		f.podWait--
	}
	cs.podAt, cs.node, cs.nodeEpoch = s.now, n, n.epoch
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
	f.dp.coldRunning--
	s.coldActive--
	f.starting--
	defer s.nextCold(f.dp)
	if cs.node.epoch != cs.nodeEpoch {
		// The node was lost during the cold start: the load or the init
		// failed with it, and the pod is gone.
		s.account(f, -1, 0)
		if s.warm {
			s.fails.coldFailed++
		}
		s.sched.wake(f)
		return
	}
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
	inst := &instance{fn: f, li: li, slots: slots, node: cs.node, speed: s.speed(), readyAt: s.now, lastUsed: s.now, idle: true}
	s.insts[li] = inst
	cs.node.add(inst)
	if err := s.router.Add(s.time(), li, slots, waiters{s, f}); err != nil {
		panic(fmt.Sprintf("faastest: router refused a fresh instance: %v", err)) // a bug of the simulator
	}
	f.ready = append(f.ready, inst)
	s.account(f, 0, 1)
	if s.warm {
		f.st.coldStart(cs, s.now)
		s.limits.coldStart(cs)
	}
	s.scheduleCrash(inst)
	s.sched.wake(f) // a promise of its policy may hang on the instance
	s.dispatch(f)
}

// podWaiters counts the dataplane's cold starts waiting for a pod.
func (dp *dataplane) podWaiters() int {
	n := 0
	for _, p := range dp.pools {
		n += p.waiters.len()
	}
	return n
}

// nextCold lets the next cold start waiting under the dataplane's
// MaxColdStarts begin.
func (s *sim) nextCold(dp *dataplane) {
	for dp.coldRunning < s.cfg.MaxColdStarts {
		cs, ok := dp.coldWait.pop()
		if !ok {
			return
		}
		s.beginCold(cs)
	}
}

// replenish starts the pod creations the pools need, within each
// dataplane's bound.
func (s *sim) replenish() {
	for _, dp := range s.dps {
		for _, p := range dp.pools {
			deficit := p.target + p.waiters.len() - len(p.idle) - p.creating
			for ; deficit > 0 && dp.creating < s.cfg.MaxParallelCreates; deficit-- {
				p.creating++
				dp.creating++
				d := sample(p.spec.Create, s.rng)
				s.schedule(event{at: s.now + int64(d), kind: evPodCreated, pool: p, aux: int64(d)})
			}
		}
	}
}

// nextNode returns the next node pods are placed on, round robin over the
// nodes that are up, or nil when every node is down.
func (s *sim) nextNode() *node {
	for range s.nodes {
		n := s.nodes[s.nodeNext%len(s.nodes)]
		s.nodeNext++
		if !n.down {
			return n
		}
	}
	return nil
}

// podCreated places a new pod on the next node and gives it to the oldest
// waiting cold start, or to the pool.
func (s *sim) podCreated(p *pool, latency int64) {
	p.creating--
	p.dp.creating--
	n := s.nextNode()
	if n == nil {
		if s.warm {
			s.fails.podsLost++ // no node to run on: the creation failed
		}
		return
	}
	if s.warm {
		p.created++
	}
	p.sizing.ObserveCreate(s.time(), time.Duration(latency))
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
