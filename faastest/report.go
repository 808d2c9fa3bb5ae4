package faastest

import (
	"cmp"
	"slices"
	"time"
)

// Report is what a simulation run measured, for every function and in
// total, plus a timeline of the whole run. Everything in it is
// deterministic: the same config, workload and seed give the same report,
// and the same JSON, byte for byte. Invocations that arrived during the
// warm-up, and the instance time spent in it, are left out.
type Report struct {
	// Name is Config.Name; Seed is Config.Seed; Policy names the router
	// policy.
	Name   string `json:"name"`
	Seed   uint64 `json:"seed"`
	Policy string `json:"policy"`
	// Duration is the virtual time the report covers (warm-up excluded).
	Duration time.Duration `json:"duration_ns"`
	// Events counts the simulator's events: arrivals, completions, cold
	// starts, pod creations, queue timeouts, decision ticks.
	Events int64 `json:"events"`
	// Total sums up every function.
	Total Stats `json:"total"`
	// Functions holds each function's figures, by ID.
	Functions []FunctionReport `json:"functions"`
	// Pools holds each warm pool's figures, by runtime.
	Pools []PoolReport `json:"pools"`
	// TimelineStep is the spacing of Timeline's points; Timeline samples
	// the whole run, warm-up included.
	TimelineStep time.Duration   `json:"timeline_step_ns"`
	Timeline     []TimelinePoint `json:"timeline"`
}

// Stats are the figures of one function, or of all of them.
type Stats struct {
	// Invocations counts the arrivals; Shed those the shedder refused,
	// QueueFull those refused by a full wait queue, TimedOut those that
	// waited longer than the queue timeout, and Completed those that ran.
	Invocations int64 `json:"invocations"`
	Completed   int64 `json:"completed"`
	Shed        int64 `json:"shed"`
	QueueFull   int64 `json:"queue_full"`
	TimedOut    int64 `json:"timed_out"`
	// ColdInvocations counts the completed invocations that waited for an
	// instance that became Ready after they arrived; ColdStartRatio is
	// their share of Completed.
	ColdInvocations int64   `json:"cold_invocations"`
	ColdStartRatio  float64 `json:"cold_start_ratio"`
	// ShedRatio is Shed / Invocations; FailedRatio is (QueueFull +
	// TimedOut) / Invocations.
	ShedRatio   float64 `json:"shed_ratio"`
	FailedRatio float64 `json:"failed_ratio"`
	// Latency runs from arrival to completion; QueueTime from arrival to
	// the start of execution (waiting for a slot, for a cold start, and
	// inside the instance).
	Latency   Percentiles `json:"latency"`
	QueueTime Percentiles `json:"queue_time"`
	// ColdStarts counts the instances that became Ready; ColdStart
	// breaks their start-up down.
	ColdStarts int64          `json:"cold_starts"`
	ColdStart  ColdStartStats `json:"cold_start"`
	// Terminated counts the instances scaled down.
	Terminated int64 `json:"terminated"`
	// InstanceSeconds is the cost: the time instances held a pod, from
	// the pod's take to the instance's end. IdleInstanceSeconds is the
	// part of it that Ready instances spent with nothing in flight.
	InstanceSeconds     float64 `json:"instance_seconds"`
	IdleInstanceSeconds float64 `json:"idle_instance_seconds"`
	// PeakInstances is the most instances alive at once.
	PeakInstances int `json:"peak_instances"`
}

// Percentiles summarise a distribution of durations. Mean and Max are
// exact; the percentiles are within 1 % (see the histogram's precision).
type Percentiles struct {
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P95  time.Duration `json:"p95_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
}

// ColdStartStats break cold starts down: the mean time from the decision
// that asked for one to Ready, and the mean of each step: waiting under
// the cold-start bound (Gate), waiting for a warm pod (Pod), fetching the
// code (Fetch), starting the process (Load) and the init hook (Init); and
// where the code came from.
type ColdStartStats struct {
	Mean  time.Duration `json:"mean_ns"`
	Max   time.Duration `json:"max_ns"`
	Gate  time.Duration `json:"gate_ns"`
	Pod   time.Duration `json:"pod_ns"`
	Fetch time.Duration `json:"fetch_ns"`
	Load  time.Duration `json:"load_ns"`
	Init  time.Duration `json:"init_ns"`
	// LocalFetches, SharedFetches and OriginFetches count the code
	// fetches served by the node's cache, the shared cache and the
	// origin.
	LocalFetches  int64 `json:"local_fetches"`
	SharedFetches int64 `json:"shared_fetches"`
	OriginFetches int64 `json:"origin_fetches"`
}

// FunctionReport is one function's figures.
type FunctionReport struct {
	ID string `json:"id"`
	Stats
}

// PoolReport is one warm pool's figures.
type PoolReport struct {
	Runtime string `json:"runtime"`
	// Created and Taken count pods.
	Created int64 `json:"created"`
	Taken   int64 `json:"taken"`
	// IdlePodSeconds is the time pods spent idle in the pool: the
	// pool's cost.
	IdlePodSeconds float64 `json:"idle_pod_seconds"`
	// PeakIdle is the most idle pods at once.
	PeakIdle int `json:"peak_idle"`
}

// TimelinePoint is the state of the run at virtual time T.
type TimelinePoint struct {
	T time.Duration `json:"t_ns"`
	// Instances alive (starting ones included), and Idle ones among them.
	Instances int `json:"instances"`
	Idle      int `json:"idle"`
	// InFlight requests hold a slot; Queued ones wait for one.
	InFlight int `json:"in_flight"`
	Queued   int `json:"queued"`
	// IdlePods are the warm pools' idle pods.
	IdlePods int `json:"idle_pods"`
	// ColdStarts counts the cold starts asked for since the previous
	// point.
	ColdStarts int `json:"cold_starts"`
}

// fnStats accumulates one function's figures during a run.
type fnStats struct {
	invocations, shed, queueFull, timedOut int64
	completed, cold                        int64
	latency, queue                         hist
	coldStarts, terminated                 int64
	coldSum, coldMax                       int64
	gate, pod, fetch, load, init           int64
	tiers                                  [3]int64
}

func (st *fnStats) record(latency, queue int64, cold bool) {
	st.completed++
	if cold {
		st.cold++
	}
	st.latency.add(time.Duration(latency))
	st.queue.add(time.Duration(queue))
}

func (st *fnStats) coldStart(cs *coldStart, ready int64) {
	st.coldStarts++
	st.coldSum += ready - cs.requested
	st.coldMax = max(st.coldMax, ready-cs.requested)
	st.gate += cs.began - cs.requested
	st.pod += cs.podAt - cs.began
	st.fetch += cs.fetched - cs.podAt
	st.load += cs.loaded - cs.fetched
	st.init += ready - cs.loaded
	st.tiers[cs.tier]++
}

func (st *fnStats) merge(o *fnStats) {
	st.invocations += o.invocations
	st.shed += o.shed
	st.queueFull += o.queueFull
	st.timedOut += o.timedOut
	st.completed += o.completed
	st.cold += o.cold
	st.latency.merge(&o.latency)
	st.queue.merge(&o.queue)
	st.coldStarts += o.coldStarts
	st.terminated += o.terminated
	st.coldSum += o.coldSum
	st.coldMax = max(st.coldMax, o.coldMax)
	st.gate += o.gate
	st.pod += o.pod
	st.fetch += o.fetch
	st.load += o.load
	st.init += o.init
	for i := range st.tiers {
		st.tiers[i] += o.tiers[i]
	}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func percentiles(h *hist) Percentiles {
	return Percentiles{Mean: h.mean(), P50: h.quantile(0.50), P95: h.quantile(0.95), P99: h.quantile(0.99), Max: time.Duration(h.max)}
}

func (st *fnStats) stats(a *acct) Stats {
	per := func(sum int64) time.Duration {
		if st.coldStarts == 0 {
			return 0
		}
		return time.Duration(sum / st.coldStarts)
	}
	return Stats{
		Invocations:     st.invocations,
		Completed:       st.completed,
		Shed:            st.shed,
		QueueFull:       st.queueFull,
		TimedOut:        st.timedOut,
		ColdInvocations: st.cold,
		ColdStartRatio:  ratio(st.cold, st.completed),
		ShedRatio:       ratio(st.shed, st.invocations),
		FailedRatio:     ratio(st.queueFull+st.timedOut, st.invocations),
		Latency:         percentiles(&st.latency),
		QueueTime:       percentiles(&st.queue),
		ColdStarts:      st.coldStarts,
		ColdStart: ColdStartStats{
			Mean: per(st.coldSum), Max: time.Duration(st.coldMax),
			Gate: per(st.gate), Pod: per(st.pod), Fetch: per(st.fetch), Load: per(st.load), Init: per(st.init),
			LocalFetches: st.tiers[tierLocal], SharedFetches: st.tiers[tierShared], OriginFetches: st.tiers[tierOrigin],
		},
		Terminated:          st.terminated,
		InstanceSeconds:     a.aliveNs / 1e9,
		IdleInstanceSeconds: a.idleNs / 1e9,
		PeakInstances:       a.peak,
	}
}

// report builds the run's report at its end.
func (s *sim) report() *Report {
	r := &Report{
		Name:         s.cfg.Name,
		Seed:         s.cfg.Seed,
		Policy:       s.cfg.Policy.Name(),
		Duration:     time.Duration(s.now - min(s.warmUp, s.now)),
		Events:       s.processed,
		TimelineStep: time.Duration(s.tl.step),
		Timeline:     s.tl.points,
	}
	var total fnStats
	fns := slices.Clone(s.fns)
	slices.SortFunc(fns, func(a, b *function) int { return cmp.Compare(a.spec.ID, b.spec.ID) })
	for _, f := range fns {
		f.acct.add(s.now, 0, 0)
		total.merge(&f.st)
		r.Functions = append(r.Functions, FunctionReport{ID: f.spec.ID, Stats: f.st.stats(&f.acct)})
	}
	s.total.add(s.now, 0, 0)
	r.Total = total.stats(&s.total)
	for _, p := range s.pools {
		p.acct.add(s.now, 0, 0)
		r.Pools = append(r.Pools, PoolReport{
			Runtime: p.name, Created: p.created, Taken: p.taken,
			IdlePodSeconds: p.acct.aliveNs / 1e9, PeakIdle: p.acct.peak,
		})
	}
	return r
}

// Function returns the figures of the function with the given ID.
func (r *Report) Function(id string) (FunctionReport, bool) {
	i, ok := slices.BinarySearchFunc(r.Functions, id, func(f FunctionReport, id string) int { return cmp.Compare(f.ID, id) })
	if !ok {
		return FunctionReport{}, false
	}
	return r.Functions[i], true
}
