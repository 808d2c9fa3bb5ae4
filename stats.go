package faas

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/internal/latency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Observer receives what the Dataplane does, for metrics and tracing
// adapters. Methods are called synchronously on the paths they describe, so
// they must be fast and must not block; embed [NopObserver] to implement
// only some of them.
type Observer interface {
	// ObserveRequest is called when an invocation ends.
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

// RequestRecord describes one finished invocation.
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

func (s *functionStats) recordColdStart(r coldstart.Report) { lazy(&s.cold).record(r) }

// coldStartStats summarize cold starts.
type coldStartStats struct {
	ok, failed atomic.Uint64
	queue      latency.Histogram
	take       latency.Histogram
	fetch      latency.Histogram
	load       latency.Histogram
	init       latency.Histogram
	total      latency.Histogram
}

func (c *coldStartStats) record(r coldstart.Report) {
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
	// Unhealthy, Draining); Starting counts cold starts in flight.
	Instances map[lifecycle.State]int
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
	// Latency summarizes the latency of the requests the function
	// answered.
	Latency LatencyStats
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
}

// Stats returns a snapshot of the Dataplane's statistics.
func (d *Dataplane) Stats() Stats {
	s := Stats{
		Node: d.cfg.NodeID, UnknownFunction: d.unknown.Load(), ColdStarts: d.coldStarts.snapshot(),
		Forwarded: d.fwd.forwarded.Load(), Failovers: d.fwd.failovers.Load(), PassedOver: d.fwd.passedOver.Load(),
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

// record counts a finished invocation of fn; code is empty for a request
// the function answered.
func (d *Dataplane) record(fn *function, start time.Time, code lifecycle.ErrorCode, waited bool) {
	lat := d.clock.Now().Sub(start)
	st := fn.stats
	st.requests.Add(1)
	if code == "" {
		st.ok.Add(1)
		if waited {
			st.waited.Add(1)
		}
		lazy(&st.latency).Record(lat)
	} else if i, ok := codeIndex[code]; ok {
		st.errs[i].Add(1)
	}
	d.obs.ObserveRequest(RequestRecord{FunctionID: fn.id, Code: code, Latency: lat, Waited: waited})
}

// recordErr counts a finished invocation: one the function answered when
// err is nil, else a failed one.
func (d *Dataplane) recordErr(fn *function, start time.Time, err error, waited bool) {
	var pe *lifecycle.Error
	switch {
	case err == nil:
		d.record(fn, start, "", waited)
	case errors.As(err, &pe):
		d.record(fn, start, pe.Code, waited)
	case errors.Is(err, context.Canceled):
		fn.stats.requests.Add(1)
		fn.stats.canceled.Add(1)
		d.obs.ObserveRequest(RequestRecord{FunctionID: fn.id, Latency: d.clock.Now().Sub(start), Waited: waited, Canceled: true})
	default:
		d.record(fn, start, lifecycle.CodeInternal, waited)
	}
}

func (d *Dataplane) countUnknown() { d.unknown.Add(1) }

// Routes returns the function's instances as the router sees them (state,
// breaker, health, slots), for introspection.
func (d *Dataplane) Routes(functionID string) []router.RouteInfo {
	return d.router.Routes(functionID)
}
