package prometheus

import (
	"sort"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

// StatsCollector is a prometheus.Collector that reads Dataplane.Stats at
// scrape time: what the Dataplane counts anyway costs nothing per request.
type StatsCollector struct {
	dp     *faas.Dataplane
	labels *labeler
	d      statsDescs
}

type statsDescs struct {
	requests, instances, inFlight, queued, free, routable, ejected, coldStarts *prom.Desc
	billed, gbSeconds, memory                                                  *prom.Desc
	shedding, shedLimit, unknown, forwarded, failovers, passedOver             *prom.Desc
	poolPods, poolWaiting, poolTarget, poolTaken, poolCreated                  *prom.Desc
	poolCreateFail, poolProbeFail                                              *prom.Desc
	members, handedOver, adopted, leasesLost                                   *prom.Desc
	usageRecords, usageBuffered                                                *prom.Desc
}

// NewStatsCollector returns the collector of dp's statistics. It shares
// m's function labels (m may be nil: then it bounds them on its own, at
// the default cap).
func NewStatsCollector(dp *faas.Dataplane, m *Metrics) *StatsCollector {
	ns, labels := defaultNamespace, newLabeler(defaultMaxFunctions)
	if m != nil {
		ns, labels = m.cfg.Namespace, m.labels
	}
	d := func(name, help string, labels ...string) *prom.Desc {
		return prom.NewDesc(prom.BuildFQName(ns, "", name), help, labels, nil)
	}
	return &StatsCollector{dp: dp, labels: labels, d: statsDescs{
		requests:   d("requests_total", "Finished requests by function and code (ok: the function answered, whatever its status; canceled: the caller went away; else the error code).", "function", "code"),
		instances:  d("instances", "Instances by function and state (starting: cold starts in flight).", "function", "state"),
		inFlight:   d("in_flight_requests", "Requests running on instances.", "function"),
		queued:     d("queue_depth", "Requests waiting for capacity.", "function"),
		free:       d("free_slots", "Free concurrency slots on routable instances.", "function"),
		routable:   d("routable_instances", "Instances that take requests (Ready, healthy, not ejected).", "function"),
		ejected:    d("ejected_instances", "Instances whose breaker is open or half-open.", "function"),
		coldStarts: d("cold_starts_total", "Cold starts by result.", "function", "result"),
		billed:     d("usage_billed_seconds_total", "Billed duration of the invocations.", "function"),
		gbSeconds:  d("usage_gb_seconds_total", "Usage in GB-seconds: billed seconds times memory GiB.", "function"),
		memory:     d("function_memory_bytes", "Memory size of one instance of the current deployment.", "function"),
		shedding:   d("shedding", "1 while the load shedder refuses requests.", nil...),
		shedLimit:  d("shed_limit", "The load shedder's concurrency limit (0: shedding disabled).", nil...),
		unknown:    d("unknown_function_requests_total", "Requests for functions not deployed.", nil...),
		forwarded:  d("forwarded_requests_total", "Requests forwarded to the function's owner node.", nil...),
		failovers:  d("forward_failovers_total", "Nodes that refused a forwarded request, which went on down the function's rendezvous order.", nil...),
		passedOver: d("forward_passed_over_total", "Suspect nodes passed over when forwarding.", nil...),

		poolPods:       d("warmpool_pods", "Pods of the warm pools by runtime and state (idle, pending, creating).", "runtime", "state"),
		poolWaiting:    d("warmpool_waiting_takes", "Cold starts waiting for a warm pod.", "runtime"),
		poolTarget:     d("warmpool_target_pods", "The sizing policy's target of idle pods.", "runtime"),
		poolTaken:      d("warmpool_taken_total", "Warm pods taken by cold starts.", "runtime"),
		poolCreated:    d("warmpool_created_total", "Warm pods created.", "runtime"),
		poolCreateFail: d("warmpool_create_failures_total", "Failed creations of warm pods.", "runtime"),
		poolProbeFail:  d("warmpool_probe_failures_total", "Failed probes of warm pods.", "runtime"),
		members:        d("warmpool_members", "Live pool managers this one knows of (lease-based sharding).", nil...),
		handedOver:     d("warmpool_handed_over_total", "Pods released to another owner.", nil...),
		adopted:        d("warmpool_adopted_total", "Pods acquired from another owner or found unowned.", nil...),
		leasesLost:     d("warmpool_leases_lost_total", "Leases that could not be renewed or claimed.", nil...),
		usageRecords:   d("usage_records_total", "Usage records by fate (made, written, failed: refused by the sink, dropped: buffer full or after the stop).", "result"),
		usageBuffered:  d("usage_records_buffered", "Usage records waiting for the sink.", nil...),
	}}
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prom.Desc) {
	d := c.d
	for _, x := range []*prom.Desc{d.requests, d.instances, d.inFlight, d.queued, d.free, d.routable, d.ejected, d.coldStarts,
		d.billed, d.gbSeconds, d.memory, d.shedding, d.shedLimit, d.unknown, d.forwarded, d.failovers, d.passedOver,
		d.poolPods, d.poolWaiting, d.poolTarget, d.poolTaken, d.poolCreated, d.poolCreateFail, d.poolProbeFail,
		d.members, d.handedOver, d.adopted, d.leasesLost, d.usageRecords, d.usageBuffered} {
		ch <- x
	}
}

// fnAgg sums the figures of the functions that share a label.
type fnAgg struct {
	codes                                       map[string]float64
	states                                      map[string]float64
	inFlight, queued, free, routable, ejected   float64
	coldOK, coldFailed, billed, gbSeconds, memB float64
}

// instanceStates are always exported, zero or not, so that a dashboard's
// series do not come and go.
var instanceStates = []lifecycle.State{lifecycle.Ready, lifecycle.Unhealthy, lifecycle.Draining}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prom.Metric) {
	s := c.dp.Stats()
	aggs := map[string]*fnAgg{}
	for _, fs := range s.Functions {
		l := c.labels.label(fs.ID)
		a := aggs[l]
		if a == nil {
			a = &fnAgg{codes: map[string]float64{}, states: map[string]float64{"starting": 0}}
			for _, st := range instanceStates {
				a.states[strings.ToLower(st.String())] = 0
			}
			aggs[l] = a
		}
		a.codes["ok"] += float64(fs.OK)
		if fs.Canceled > 0 {
			a.codes["canceled"] += float64(fs.Canceled)
		}
		for code, n := range fs.Errors {
			a.codes[string(code)] += float64(n)
		}
		for st, n := range fs.Instances {
			a.states[strings.ToLower(st.String())] += float64(n)
		}
		a.states["starting"] += float64(fs.Starting)
		a.inFlight += float64(fs.InFlight)
		a.queued += float64(fs.Queued)
		a.free += float64(fs.Routes.Free)
		a.routable += float64(fs.Routes.Routable)
		a.ejected += float64(fs.Routes.Ejected)
		a.coldOK += float64(fs.ColdStarts.Count)
		a.coldFailed += float64(fs.ColdStarts.Failed)
		a.billed += fs.Usage.Billed.Seconds()
		a.gbSeconds += fs.Usage.GBSeconds
		a.memB += float64(fs.MemoryBytes)
	}
	d := c.d
	labels := make([]string, 0, len(aggs))
	for l := range aggs {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		a := aggs[l]
		for code, n := range a.codes {
			ch <- prom.MustNewConstMetric(d.requests, prom.CounterValue, n, l, code)
		}
		for st, n := range a.states {
			ch <- prom.MustNewConstMetric(d.instances, prom.GaugeValue, n, l, st)
		}
		ch <- prom.MustNewConstMetric(d.inFlight, prom.GaugeValue, a.inFlight, l)
		ch <- prom.MustNewConstMetric(d.queued, prom.GaugeValue, a.queued, l)
		ch <- prom.MustNewConstMetric(d.free, prom.GaugeValue, a.free, l)
		ch <- prom.MustNewConstMetric(d.routable, prom.GaugeValue, a.routable, l)
		ch <- prom.MustNewConstMetric(d.ejected, prom.GaugeValue, a.ejected, l)
		ch <- prom.MustNewConstMetric(d.coldStarts, prom.CounterValue, a.coldOK, l, "ok")
		ch <- prom.MustNewConstMetric(d.coldStarts, prom.CounterValue, a.coldFailed, l, "failed")
		ch <- prom.MustNewConstMetric(d.billed, prom.CounterValue, a.billed, l)
		ch <- prom.MustNewConstMetric(d.gbSeconds, prom.CounterValue, a.gbSeconds, l)
		if l != OtherFunctions { // a sum of sizes means nothing
			ch <- prom.MustNewConstMetric(d.memory, prom.GaugeValue, a.memB, l)
		}
	}
	ch <- prom.MustNewConstMetric(d.shedding, prom.GaugeValue, boolValue(s.Shedding))
	ch <- prom.MustNewConstMetric(d.shedLimit, prom.GaugeValue, float64(s.ShedLimit))
	ch <- prom.MustNewConstMetric(d.unknown, prom.CounterValue, float64(s.UnknownFunction))
	ch <- prom.MustNewConstMetric(d.forwarded, prom.CounterValue, float64(s.Forwarded))
	ch <- prom.MustNewConstMetric(d.failovers, prom.CounterValue, float64(s.Failovers))
	ch <- prom.MustNewConstMetric(d.passedOver, prom.CounterValue, float64(s.PassedOver))
	for rt, p := range s.Pool.Runtimes {
		ch <- prom.MustNewConstMetric(d.poolPods, prom.GaugeValue, float64(p.Idle), rt, "idle")
		ch <- prom.MustNewConstMetric(d.poolPods, prom.GaugeValue, float64(p.Pending), rt, "pending")
		ch <- prom.MustNewConstMetric(d.poolPods, prom.GaugeValue, float64(p.Creating), rt, "creating")
		ch <- prom.MustNewConstMetric(d.poolWaiting, prom.GaugeValue, float64(p.Waiting), rt)
		ch <- prom.MustNewConstMetric(d.poolTarget, prom.GaugeValue, float64(p.Target), rt)
		ch <- prom.MustNewConstMetric(d.poolTaken, prom.CounterValue, float64(p.Taken), rt)
		ch <- prom.MustNewConstMetric(d.poolCreated, prom.CounterValue, float64(p.Created), rt)
		ch <- prom.MustNewConstMetric(d.poolCreateFail, prom.CounterValue, float64(p.CreateFailures), rt)
		ch <- prom.MustNewConstMetric(d.poolProbeFail, prom.CounterValue, float64(p.ProbeFailures), rt)
	}
	ch <- prom.MustNewConstMetric(d.members, prom.GaugeValue, float64(s.Pool.Members))
	ch <- prom.MustNewConstMetric(d.handedOver, prom.CounterValue, float64(s.Pool.HandedOver))
	ch <- prom.MustNewConstMetric(d.adopted, prom.CounterValue, float64(s.Pool.Adopted))
	ch <- prom.MustNewConstMetric(d.leasesLost, prom.CounterValue, float64(s.Pool.LeasesLost))
	u := s.Usage
	for _, r := range []struct {
		name string
		n    uint64
	}{{"made", u.Records}, {"written", u.Written}, {"failed", u.Failed}, {"dropped", u.Dropped}} {
		ch <- prom.MustNewConstMetric(d.usageRecords, prom.CounterValue, float64(r.n), r.name)
	}
	ch <- prom.MustNewConstMetric(d.usageBuffered, prom.GaugeValue, float64(u.Buffered))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
