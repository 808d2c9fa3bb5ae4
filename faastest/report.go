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
	// Pools holds each warm pool's figures, by runtime (summed over the
	// dataplanes).
	Pools []PoolReport `json:"pools"`
	// Limits says what each bound of the platform did, and Decided (a
	// method) which of them decided the outcome.
	Limits Limits `json:"limits"`
	// Dataplanes holds each dataplane node's figures (one unless
	// Config.Dataplanes says otherwise).
	Dataplanes []DataplaneReport `json:"dataplanes"`
	// Nodes holds each worker node's figures.
	Nodes []NodeReport `json:"nodes"`
	// Failures counts what the failure model did.
	Failures FailureReport `json:"failures"`
	// TimelineStep is the spacing of Timeline's points; Timeline samples
	// the whole run, warm-up included.
	TimelineStep time.Duration   `json:"timeline_step_ns"`
	Timeline     []TimelinePoint `json:"timeline"`
}

// Stats are the figures of one function, or of all of them.
type Stats struct {
	// Invocations counts the arrivals; Shed those the shedder refused,
	// Limited those the function-wide limit refused, QueueFull those
	// refused by a full wait queue, TimedOut those that waited longer than
	// the queue timeout, Failed those that failed with their instance and
	// could not be retried, and Completed those that ran: Invocations is
	// the sum of the other six.
	Invocations int64 `json:"invocations"`
	Completed   int64 `json:"completed"`
	Shed        int64 `json:"shed"`
	Limited     int64 `json:"limited"`
	QueueFull   int64 `json:"queue_full"`
	TimedOut    int64 `json:"timed_out"`
	Failed      int64 `json:"failed"`
	// Retried counts the retries on another instance (or back in the
	// wait queue) after an instance failed.
	Retried int64 `json:"retried"`
	// ColdInvocations counts the completed invocations that waited for an
	// instance that became Ready after they arrived; ColdStartRatio is
	// their share of Completed.
	ColdInvocations int64   `json:"cold_invocations"`
	ColdStartRatio  float64 `json:"cold_start_ratio"`
	// ShedRatio is Shed / Invocations; FailedRatio is (Limited +
	// QueueFull + TimedOut + Failed) / Invocations.
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
	// GBSeconds and IdleGBSeconds are the same in memory-time: each
	// instance weighs its function's MemoryMB. IdleGBSeconds is the
	// wasted memory-time of the keep-alive studies (memory held by
	// instances that execute nothing).
	GBSeconds     float64 `json:"gb_seconds"`
	IdleGBSeconds float64 `json:"idle_gb_seconds"`
	// PeakInstances is the most instances alive at once.
	PeakInstances int `json:"peak_instances"`
	// PeakConcurrency is the most requests admitted and not yet ended at
	// once (running or waiting) of one function; for the total, the
	// largest of the functions'. A function-wide limit bounds it.
	PeakConcurrency int `json:"peak_concurrency"`
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

// DataplaneReport is one dataplane node's figures.
type DataplaneReport struct {
	Node string `json:"node"`
	// Functions it owns; Arrived, the invocations that reached it first
	// (when there are several dataplanes), Forwarded those of them it
	// sent to their owner, and Shed those its shedder refused.
	Functions int64 `json:"functions"`
	Arrived   int64 `json:"arrived"`
	Forwarded int64 `json:"forwarded"`
	Shed      int64 `json:"shed"`
}

// NodeReport is one worker node's figures.
type NodeReport struct {
	Node  string  `json:"node"`
	Speed float64 `json:"speed"`
	// Served counts the invocations completed on it, and BusySeconds
	// their execution time there.
	Served      int64   `json:"served"`
	BusySeconds float64 `json:"busy_seconds"`
}

// FailureReport counts what the failure model did (after the warm-up).
type FailureReport struct {
	// Crashes counts the instances that crashed (on their own or with
	// their node); NodesLost the node losses; ColdStartsFailed the cold
	// starts that lost their node; PodsLost the pod creations that found
	// every node down.
	Crashes          int64 `json:"crashes"`
	NodesLost        int64 `json:"nodes_lost"`
	ColdStartsFailed int64 `json:"cold_starts_failed"`
	PodsLost         int64 `json:"pods_lost"`
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
	limited, failed, retried               int64
	completed, cold                        int64
	peakHeld                               int
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
	st.limited += o.limited
	st.failed += o.failed
	st.retried += o.retried
	st.peakHeld = max(st.peakHeld, o.peakHeld)
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

func (st *fnStats) stats(a *acct, gbPerInstance float64) Stats {
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
		Limited:         st.limited,
		QueueFull:       st.queueFull,
		TimedOut:        st.timedOut,
		Failed:          st.failed,
		Retried:         st.retried,
		ColdInvocations: st.cold,
		ColdStartRatio:  ratio(st.cold, st.completed),
		ShedRatio:       ratio(st.shed, st.invocations),
		FailedRatio:     ratio(st.limited+st.queueFull+st.timedOut+st.failed, st.invocations),
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
		GBSeconds:           a.aliveNs / 1e9 * gbPerInstance,
		IdleGBSeconds:       a.idleNs / 1e9 * gbPerInstance,
		PeakInstances:       a.peak,
		PeakConcurrency:     st.peakHeld,
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
	var gb, idleGB float64
	fns := slices.Clone(s.fns)
	slices.SortFunc(fns, func(a, b *function) int { return cmp.Compare(a.spec.ID, b.spec.ID) })
	r.Functions = make([]FunctionReport, 0, len(fns))
	for _, f := range fns {
		f.acct.add(s.now, 0, 0)
		total.merge(&f.st)
		st := f.st.stats(&f.acct, f.spec.MemoryMB/1024)
		gb += st.GBSeconds
		idleGB += st.IdleGBSeconds
		r.Functions = append(r.Functions, FunctionReport{ID: f.spec.ID, Stats: st})
	}
	s.total.add(s.now, 0, 0)
	r.Total = total.stats(&s.total, 0)
	r.Total.GBSeconds, r.Total.IdleGBSeconds = gb, idleGB
	r.Limits = s.limits.limits(&r.Total)
	for i, name := range s.runtimes {
		pr := PoolReport{Runtime: name}
		for _, dp := range s.dps {
			p := dp.pools[i]
			p.acct.add(s.now, 0, 0)
			pr.Created += p.created
			pr.Taken += p.taken
			pr.IdlePodSeconds += p.acct.aliveNs / 1e9
			pr.PeakIdle += p.acct.peak
		}
		r.Pools = append(r.Pools, pr)
	}
	for _, dp := range s.dps {
		r.Dataplanes = append(r.Dataplanes, DataplaneReport{
			Node: dp.name, Functions: dp.st.functions, Arrived: dp.st.arrived, Forwarded: dp.st.forwarded, Shed: dp.st.shed,
		})
	}
	for _, n := range s.nodes {
		r.Nodes = append(r.Nodes, NodeReport{Node: n.name, Speed: n.speed, Served: n.served, BusySeconds: float64(n.busyNs) / 1e9})
	}
	r.Failures = FailureReport{Crashes: s.fails.crashes, NodesLost: s.fails.nodesLost, ColdStartsFailed: s.fails.coldFailed, PodsLost: s.fails.podsLost}
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
