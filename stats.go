package faas

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/internal/latency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Observer receives what the Dataplane does, for metrics and tracing
// adapters. Methods are called synchronously on the paths they describe, so
// they must be fast and must not block; embed [NopObserver] to implement
// only some of them. They are called concurrently.
type Observer interface {
	// ObserveRequest is called when an invocation ends. A request that
	// waited for a cold start whose report was not in yet (it follows the
	// instance's Ready transition by moments) is observed when the report
	// arrives, from the cold start's goroutine, so that
	// RequestRecord.ColdStart is set.
	ObserveRequest(r RequestRecord)
	// ObserveColdStart is called when a cold start ends, successful or not.
	ObserveColdStart(r coldstart.Report)
	// ObserveInstance is called for every state transition of an
	// instance, under the instance's lock: it may read the instance but
	// must not transition it nor call the Dataplane.
	ObserveInstance(inst *lifecycle.Instance, t lifecycle.Transition)
	// ObserveRoute is called for every route event (added, removed,
	// ejected, readmitted). It runs under the router's lock: it must not
	// call the Dataplane.
	ObserveRoute(e router.Event)
}

// RequestRecord describes one finished invocation. Times are on the
// Dataplane's clock. The fields after Canceled are zero for a request
// refused before admission (an invalid one); a request refused by
// admission (shed, at a limit, out of queue time) has RequestID, Caller,
// Priority and ShedReason.
type RequestRecord struct {
	FunctionID string
	// Code is the error code, empty when the function answered (whatever
	// its status).
	Code lifecycle.ErrorCode
	// Latency is the time from arrival to the end of the response.
	Latency time.Duration
	// Waited reports that the request waited for capacity.
	Waited bool
	// Canceled reports that the caller went away before the answer.
	Canceled bool

	// RequestID is the request's X-Faas-Request-Id; Caller the caller it
	// was admitted as (X-Faas-Caller, else the function ID) and Priority
	// its shedding class.
	RequestID, Caller string
	Priority          loadshed.Priority
	// ShedReason says why the load shedder refused the request (Code
	// shed); zero otherwise.
	ShedReason loadshed.Reason
	// Generation is the function's deployment the request was admitted
	// to.
	Generation uint64
	// Start is when the request arrived.
	Start time.Time
	// QueueStart and QueueEnd bound the request's wait for capacity (a
	// cold start or a busy instance); zero when it found a free slot.
	// QueueEnd is zero when the wait failed.
	QueueStart, QueueEnd time.Time
	// Sent is when the request was sent to an instance (its first
	// attempt) and Returned when the answer of its last attempt ended;
	// zero when it was never sent.
	Sent, Returned time.Time
	// InstanceID and Node name the instance of the last attempt.
	InstanceID, Node string
	// Cold reports that the request waited for the cold start of the
	// instance that served it (the instance became Ready while the
	// request waited), as opposed to a warm request, which found a free
	// slot, or waited for a busy instance's slot. ColdStart is that cold
	// start (nil when warm; nil when cold but its report never came).
	Cold      bool
	ColdStart *ColdStartRecord
	// Billed is the billed duration, in whole milliseconds, of the
	// attempts that reached a function, and BilledBy who measured it.
	// MemoryBytes is the instance's memory size (FunctionSpec.MemoryBytes).
	Billed      time.Duration
	BilledBy    BillingSource
	MemoryBytes int64
}

// NopObserver ignores everything; embed it to implement part of Observer.
type NopObserver struct{}

// ObserveRequest does nothing.
func (NopObserver) ObserveRequest(RequestRecord) {}

// ObserveColdStart does nothing.
func (NopObserver) ObserveColdStart(coldstart.Report) {}

// ObserveInstance does nothing.
func (NopObserver) ObserveInstance(*lifecycle.Instance, lifecycle.Transition) {}

// ObserveRoute does nothing.
func (NopObserver) ObserveRoute(router.Event) {}

// Observers returns an Observer that passes every event to each of obs, in
// order (nil entries are skipped): a metrics adapter and a tracing one,
// say.
func Observers(obs ...Observer) Observer {
	var list multiObserver
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	if len(list) == 1 {
		return list[0]
	}
	return list
}

type multiObserver []Observer

func (m multiObserver) ObserveRequest(r RequestRecord) {
	for _, o := range m {
		o.ObserveRequest(r)
	}
}

func (m multiObserver) ObserveColdStart(r coldstart.Report) {
	for _, o := range m {
		o.ObserveColdStart(r)
	}
}

func (m multiObserver) ObserveInstance(inst *lifecycle.Instance, t lifecycle.Transition) {
	for _, o := range m {
		o.ObserveInstance(inst, t)
	}
}

func (m multiObserver) ObserveRoute(e router.Event) {
	for _, o := range m {
		o.ObserveRoute(e)
	}
}

// codeIndex numbers the closed set of error codes for lock-free counters.
var codeIndex = func() map[lifecycle.ErrorCode]int {
	m := map[lifecycle.ErrorCode]int{}
	for i, c := range lifecycle.Codes() {
		m[c] = i
	}
	return m
}()

// functionStats are one function's counters, updated without locks.
type functionStats struct {
	requests, ok, waited, canceled atomic.Uint64
	coldCalls                      atomic.Uint64   // requests that waited for a cold start
	billedMillis, mibMillis        atomic.Uint64   // usage: billed ms, and billed ms × MiB
	errs                           []atomic.Uint64 // by codeIndex
	latency                        atomic.Pointer[latency.Histogram]
	cold                           atomic.Pointer[coldStartStats] // created at the first cold start
}

func newFunctionStats() *functionStats {
	return &functionStats{errs: make([]atomic.Uint64, len(codeIndex))}
}

// lazy returns *p, created on first use: most of a large fleet's functions
// are rarely invoked and need no histograms.
func lazy[T any](p *atomic.Pointer[T]) *T {
	if v := p.Load(); v != nil {
		return v
	}
	p.CompareAndSwap(nil, new(T))
	return p.Load()
}

func (s *functionStats) recordColdStart(r coldstart.Report) { lazy(&s.cold).count(r) }

// coldStartStats summarize cold starts; the Dataplane's own (not the
// functions') also keeps the log of recent ones.
type coldStartStats struct {
	ok, failed atomic.Uint64
	queue      latency.Histogram
	take       latency.Histogram
	fetch      latency.Histogram
	load       latency.Histogram
	init       latency.Histogram
	total      latency.Histogram
	log        atomic.Pointer[coldStartLog]
}

// record counts the Dataplane's cold start r and logs it.
func (c *coldStartStats) record(r coldstart.Report) {
	c.count(r)
	lazy(&c.log).add(r, time.Now())
}

func (c *coldStartStats) count(r coldstart.Report) {
	if r.Err != nil {
		c.failed.Add(1)
		return
	}
	c.ok.Add(1)
	b := r.Breakdown
	c.queue.Record(b.Queue)
	c.take.Record(b.Take)
	c.fetch.Record(b.Fetch)
	c.load.Record(b.Load)
	c.init.Record(b.Init)
	c.total.Record(b.Total)
}

// ColdStartStats summarizes cold starts: counts, and the median of each
// step with the tail of the total.
type ColdStartStats struct {
	Count, Failed uint64
	// P50 holds the median of each step (the medians need not add up to
	// the median total).
	P50 coldstart.Breakdown
	// P99 is the 99th percentile of the total.
	P99 time.Duration
}

func (c *coldStartStats) snapshot() ColdStartStats {
	return ColdStartStats{
		Count: c.ok.Load(), Failed: c.failed.Load(),
		P50: coldstart.Breakdown{
			Queue: c.queue.Quantile(.5), Take: c.take.Quantile(.5), Fetch: c.fetch.Quantile(.5),
			Load: c.load.Quantile(.5), Init: c.init.Quantile(.5), Total: c.total.Quantile(.5),
		},
		P99: c.total.Quantile(.99),
	}
}

// LatencyStats summarizes the latency of a function's successful requests.
type LatencyStats struct {
	Mean, P50, P95, P99, Max time.Duration
}

// FunctionStats describes one function at one moment.
type FunctionStats struct {
	ID         string
	Generation uint64
	// Instances counts the function's Ready instances by state (Ready,
	// Unhealthy, Draining); Steady counts those of them that are steady
	// instances (FunctionSpec.SteadyInstances); Starting counts cold
	// starts in flight.
	Instances map[lifecycle.State]int
	Steady    int
	Starting  int
	// InFlight counts requests running on instances, Queued those
	// waiting for capacity.
	InFlight, Queued int
	// Requests counts finished invocations; OK those the function
	// answered; WarmHits those that found a free slot at once; Waited
	// those that waited for capacity (a cold start or a busy instance).
	Requests, OK, WarmHits, Waited uint64
	// Shed counts requests refused by the load shedder (also in Errors).
	Shed uint64
	// Canceled counts requests whose caller went away.
	Canceled uint64
	// Errors counts failed invocations by error code.
	Errors map[lifecycle.ErrorCode]uint64
	// ColdStarts summarizes the function's cold starts.
	ColdStarts ColdStartStats
	// Cold counts the requests that waited for the cold start of the
	// instance that served them (see RequestRecord.Cold); the other
	// waiting requests waited for a busy instance.
	Cold uint64
	// Latency summarizes the latency of the requests the function
	// answered.
	Latency LatencyStats
	// MemoryBytes and MilliCPU are the resources of one instance of the
	// current deployment.
	MemoryBytes, MilliCPU int64
	// Usage sums the billed durations of the function's invocations and
	// their GB-seconds (see [UsageRecord]).
	Usage FunctionUsage
	// Routes is the router's view (routable, ejected, free slots...).
	Routes router.Stats
}

// Stats describes the Dataplane at one moment.
type Stats struct {
	Node string
	// Functions are the deployed functions, sorted by ID.
	Functions []FunctionStats
	// UnknownFunction counts requests for functions not deployed.
	UnknownFunction uint64
	// Forwarded counts requests sent to another node (the function's
	// owner, or its successor); Failovers the nodes that refused a
	// forward, after which the request went on down the function's
	// rendezvous order (to this node, in the end); PassedOver the times
	// a suspect node was skipped without a dial (see ClusterConfig).
	Forwarded, Failovers, PassedOver uint64
	// ColdStarts summarizes every cold start.
	ColdStarts ColdStartStats
	// Shedding reports whether the load shedder is refusing requests now;
	// ShedLimit is its concurrency limit (0 when shedding is disabled).
	Shedding  bool
	ShedLimit int
	// Pool describes the warm pools.
	Pool warmpool.Stats
	// Usage describes the usage records' way to their sink.
	Usage UsageStats
}

// Stats returns a snapshot of the Dataplane's statistics.
func (d *Dataplane) Stats() Stats {
	s := Stats{
		Node: d.cfg.NodeID, UnknownFunction: d.unknown.Load(), ColdStarts: d.coldStarts.snapshot(),
		Forwarded: d.fwd.forwarded.Load(), Failovers: d.fwd.failovers.Load(), PassedOver: d.fwd.passedOver.Load(),
		Usage: d.usage.stats(),
	}
	if d.shed != nil {
		s.Shedding, s.ShedLimit = d.shed.Shedding(), d.shed.Limit()
	}
	if d.running() { // the pool exists, and reading it is ordered after Start
		s.Pool = d.pool.Stats()
	}
	for fn := range d.funcs.All() {
		s.Functions = append(s.Functions, d.functionStats(fn))
	}
	slices.SortFunc(s.Functions, func(a, b FunctionStats) int { return strings.Compare(a.ID, b.ID) })
	return s
}

// FunctionStats returns the statistics of one function.
func (d *Dataplane) FunctionStats(id string) (FunctionStats, bool) {
	fn := d.lookup(id)
	if fn == nil {
		return FunctionStats{}, false
	}
	return d.functionStats(fn), true
}

func (d *Dataplane) functionStats(fn *function) FunctionStats {
	v := fn.version()
	st := fn.stats
	fs := FunctionStats{
		ID: fn.id, Generation: v.gen,
		Instances: map[lifecycle.State]int{},
		Queued:    fn.queue.Len(),
		Requests:  st.requests.Load(), OK: st.ok.Load(), Waited: st.waited.Load(),
		Canceled: st.canceled.Load(),
		Errors:   map[lifecycle.ErrorCode]uint64{},

		Cold: st.coldCalls.Load(), MemoryBytes: v.spec.MemoryBytes, MilliCPU: v.spec.MilliCPU,
		Usage: usageOf(st.billedMillis.Load(), st.mibMillis.Load()),

		Routes: d.router.Stats(fn.id),
	}
	if d.running() {
		fs.Starting = d.starter.InFlight(v.cs)
	}
	if c := st.cold.Load(); c != nil {
		fs.ColdStarts = c.snapshot()
	}
	fs.WarmHits = fs.OK - min(fs.OK, fs.Waited)
	fs.InFlight = fs.Routes.InFlight
	fn.mu.Lock()
	for _, in := range fn.instances {
		fs.Instances[in.inst.State()]++
		if in.steady && !in.draining {
			fs.Steady++
		}
	}
	fn.mu.Unlock()
	for c, i := range codeIndex {
		if n := st.errs[i].Load(); n > 0 {
			fs.Errors[c] = n
		}
	}
	fs.Shed = fs.Errors[lifecycle.CodeShed]
	if h := st.latency.Load(); h != nil {
		snap := h.Snapshot()
		fs.Latency = LatencyStats{Mean: snap.Mean, P50: snap.P50, P95: snap.P95, P99: snap.P99, Max: snap.Max}
	}
	return fs
}

// count counts a finished invocation of fn and completes rr (FunctionID,
// Start and Waited set) with its Latency, Code and Canceled: err is nil for
// a request the function answered, whatever its status.
func (d *Dataplane) count(fn *function, rr *RequestRecord, err error) {
	rr.Latency = d.clock.Now().Sub(rr.Start)
	st := fn.stats
	st.requests.Add(1)
	if err == nil {
		st.ok.Add(1)
		if rr.Waited {
			st.waited.Add(1)
		}
		lazy(&st.latency).Record(rr.Latency)
		return
	}
	if pe := (*lifecycle.Error)(nil); errors.As(err, &pe) {
		rr.Code = pe.Code
	} else if errors.Is(err, context.Canceled) {
		st.canceled.Add(1)
		rr.Canceled = true
		return
	} else {
		rr.Code = lifecycle.CodeInternal
	}
	if i, ok := codeIndex[rr.Code]; ok {
		st.errs[i].Add(1)
	}
}

// recordErr counts an invocation refused before it became a call: one the
// function answered when err is nil, else a failed one.
func (d *Dataplane) recordErr(fn *function, start time.Time, err error, waited bool) {
	rr := RequestRecord{FunctionID: fn.id, Start: start, Waited: waited}
	d.count(fn, &rr, err)
	d.obs.ObserveRequest(rr)
}

// recordCall counts the end of call c (err as for count), meters its
// usage, and hands its record to the observer, once the cold start it
// waited for, if any, has been reported.
func (d *Dataplane) recordCall(c *call, err error) {
	fn := c.fn
	rr := RequestRecord{
		FunctionID: fn.id, Start: c.start, Waited: c.waited,
		RequestID: c.rid, Caller: c.caller, Priority: c.prio, Generation: c.v.gen,
		QueueStart: c.queuedAt, QueueEnd: c.gotSlot, Sent: c.sent, Returned: c.ended,
		MemoryBytes: c.v.spec.MemoryBytes,
	}
	d.count(fn, &rr, err)
	if rr.Code == lifecycle.CodeShed {
		if ra := (*retryAfterError)(nil); errors.As(err, &ra) {
			rr.ShedReason = ra.reason
		}
	}
	if c.inst != nil {
		rr.InstanceID, rr.Node = c.inst.ID, c.inst.Node
		rr.Cold = c.waited && readySince(c.inst, c.queuedAt)
	}
	rr.Billed, rr.BilledBy = c.billing(err)
	st := fn.stats
	if rr.Cold {
		st.coldCalls.Add(1)
	}
	if rr.Billed > 0 {
		ms := uint64(rr.Billed / time.Millisecond)
		st.billedMillis.Add(ms)
		st.mibMillis.Add(ms * uint64(rr.MemoryBytes>>20))
	}
	d.usage.record(&rr)
	if !rr.Cold {
		d.obs.ObserveRequest(rr)
		return
	}
	cold := rr // escapes to the heap on this path only
	lazy(&d.coldStarts.log).attach(rr.InstanceID, func(cs *ColdStartRecord) {
		cold.ColdStart = cs
		d.obs.ObserveRequest(cold)
	})
}

// readySince reports whether inst's cold start ended (its transition from
// Loaded to Ready) at or after t.
func readySince(inst *lifecycle.Instance, t time.Time) bool {
	for _, tr := range inst.History() {
		if tr.From == lifecycle.Loaded && tr.To == lifecycle.Ready {
			return !tr.At.Before(t)
		}
	}
	return false
}

func (d *Dataplane) countUnknown() { d.unknown.Add(1) }

// Routes returns the function's instances as the router sees them (state,
// breaker, health, slots), for introspection.
func (d *Dataplane) Routes(functionID string) []router.RouteInfo {
	return d.router.Routes(functionID)
}

// RecentColdStarts returns the last n cold starts of the function (of every
// function when functionID is empty), newest first, among the last
// coldStartLogSize cold starts of the Dataplane; failed ones included.
func (d *Dataplane) RecentColdStarts(functionID string, n int) []ColdStartRecord {
	l := d.coldStarts.log.Load()
	if l == nil || n <= 0 {
		return nil
	}
	return l.recent(functionID, n)
}

// ColdStartRecord is one cold start as the Dataplane remembers it.
type ColdStartRecord struct {
	FunctionID string
	Generation uint64
	// InstanceID, PodID and Node are empty when no pod was taken.
	InstanceID, PodID, Node string
	// End is when the report reached the Dataplane (wall clock) and Start
	// End minus the cold start's total time.
	Start, End time.Time
	Breakdown  coldstart.Breakdown
	// Err says why the cold start failed; empty when it succeeded.
	Err string
}

// Bounds of the cold-start log.
const (
	// coldStartLogSize is how many cold starts the log remembers: enough
	// for the admin page and for matching the requests that waited to the
	// cold start of their instance under heavy churn.
	coldStartLogSize = 1024
	// coldStartWait bounds how long the record of a request that waited
	// for a cold start waits for that cold start's report, which follows
	// the instance's Ready transition by moments. Real time: it only
	// bounds a report that never comes.
	coldStartWait = 250 * time.Millisecond
	// maxParked bounds the records waiting for their cold start's report.
	maxParked = 4096
)

// coldStartLog remembers the recent cold starts, and hands the records of
// the requests that waited for one to their observer once its report is
// in.
type coldStartLog struct {
	mu      sync.Mutex
	ring    []ColdStartRecord // the last coldStartLogSize, at n % coldStartLogSize
	n       uint64            // cold starts added
	byInst  map[string]uint64 // instance ID → its index in n's sequence
	parked  map[string][]*parkedRecord
	nparked int
}

// parkedRecord is a request's record that waits for its cold start.
type parkedRecord struct {
	then func(*ColdStartRecord)
	done bool // handed over (guarded by the log's mu)
}

// add logs the report r, received at at, and hands it to the records that
// waited for it.
func (l *coldStartLog) add(r coldstart.Report, at time.Time) {
	rec := ColdStartRecord{
		FunctionID: r.FunctionID, Generation: r.Generation,
		InstanceID: r.InstanceID, PodID: r.PodID, Node: r.Node,
		Start: at.Add(-r.Breakdown.Total), End: at, Breakdown: r.Breakdown,
	}
	if r.Err != nil {
		rec.Err = r.Err.Error()
	}
	l.mu.Lock()
	if l.byInst == nil {
		l.byInst, l.parked = map[string]uint64{}, map[string][]*parkedRecord{}
	}
	i := int(l.n % coldStartLogSize)
	if i < len(l.ring) {
		if old := l.ring[i].InstanceID; old != "" && l.byInst[old] == l.n-coldStartLogSize {
			delete(l.byInst, old)
		}
		l.ring[i] = rec
	} else {
		l.ring = append(l.ring, rec)
	}
	if rec.InstanceID != "" {
		l.byInst[rec.InstanceID] = l.n
	}
	l.n++
	waiting := l.parked[rec.InstanceID]
	delete(l.parked, rec.InstanceID)
	l.nparked -= len(waiting)
	for _, p := range waiting {
		p.done = true
	}
	l.mu.Unlock()
	for _, p := range waiting {
		cp := rec
		p.then(&cp)
	}
}

// attach calls then with the cold start of the instance id: at once when
// its report is in, else when it arrives, or with nil after coldStartWait.
func (l *coldStartLog) attach(id string, then func(*ColdStartRecord)) {
	l.mu.Lock()
	if seq, ok := l.byInst[id]; ok {
		rec := l.ring[seq%coldStartLogSize]
		l.mu.Unlock()
		then(&rec)
		return
	}
	if l.nparked >= maxParked {
		l.mu.Unlock()
		then(nil)
		return
	}
	if l.parked == nil {
		l.byInst, l.parked = map[string]uint64{}, map[string][]*parkedRecord{}
	}
	p := &parkedRecord{then: then}
	l.parked[id] = append(l.parked[id], p)
	l.nparked++
	l.mu.Unlock()
	time.AfterFunc(coldStartWait, func() { l.expire(id, p) })
}

// expire hands p over without its cold start, unless it was handed over.
func (l *coldStartLog) expire(id string, p *parkedRecord) {
	l.mu.Lock()
	if p.done {
		l.mu.Unlock()
		return
	}
	p.done = true
	l.parked[id] = slices.DeleteFunc(l.parked[id], func(q *parkedRecord) bool { return q == p })
	if len(l.parked[id]) == 0 {
		delete(l.parked, id)
	}
	l.nparked--
	l.mu.Unlock()
	p.then(nil)
}

// recent returns the last n records of fn (all when fn is empty), newest
// first.
func (l *coldStartLog) recent(fn string, n int) []ColdStartRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ColdStartRecord
	for k := uint64(0); k < uint64(len(l.ring)) && len(out) < n; k++ {
		rec := l.ring[(l.n-1-k)%coldStartLogSize]
		if fn == "" || rec.FunctionID == fn {
			out = append(out, rec)
		}
	}
	return out
}
