// Package prometheus exports a faasplane Dataplane's metrics to Prometheus
// with client_golang. Three collectors divide the work by where the figures
// come from. [Metrics] is a faas.Observer: the Dataplane calls it on the
// request path, and it records only what needs one observation per event —
// latency, queue-wait and cold-start histograms (native histograms, with
// classic buckets for the scrapers that do not read them), how each request
// found its capacity (warm, behind a busy instance, or by a cold start),
// shedding by reason and caller class, code-cache hits, instance and route
// events. [NewStatsCollector] reads Dataplane.Stats at scrape time for
// everything the Dataplane already counts (requests by function and code,
// instances by state, queue depth, in-flight, warm pools per runtime, lease
// and membership operations, usage in GB-seconds, the usage records' way
// to their sink), so that those cost nothing per request. [NewAgentCollector]
// asks each instance's agent for its own statistics (requests it served,
// billed milliseconds, memory-limit kills, function log lines) over the
// control protocol, and keeps per-function counters monotonic while
// instances come and go.
//
// The function label is bounded: the first Config.MaxFunctions functions
// seen (100 by default) get their own series, every other one is folded
// into the series labelled OtherFunctions ("_other"), so a fleet of a
// hundred thousand functions costs a bounded number of series. Names start
// with Config.Namespace ("faas" by default); dashboards/faasplane.json is a
// Grafana dashboard of these metrics.
//
// Typical wiring: build the Metrics first, give it to faas.Config.Observer,
// then register the three collectors with a registry and serve it with
// promhttp on an admin listener (not on the gateway):
//
//	m, _ := prometheus.New(prometheus.Config{})
//	dp, _ := faas.New(faas.Config{Pods: pods, Code: origin, Observer: m})
//	agents, _ := prometheus.NewAgentCollector(dp, prometheus.AgentConfig{})
//	reg := prom.NewRegistry()
//	reg.MustRegister(m, prometheus.NewStatsCollector(dp, m), agents)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package prometheus
