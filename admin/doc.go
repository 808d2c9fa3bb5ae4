// Package admin is a Dataplane's status page, the one operators of HAProxy,
// Envoy or Traefik expect: an http.Handler that shows, live, each
// function's instances with their state, utilization and breaker, its
// queue and in-flight requests, the recent cold starts with their
// breakdown (queue, take, fetch, load, init), the warm pools per runtime,
// the instances per node, and the load shedder's state — as an HTML page
// (standard library templates, refreshed by the browser, no build step and
// no script) and as the same data in JSON (?format=json, or a path ending
// in .json).
//
// Mount it on an admin listener, never on the gateway: it tells who runs
// what where. It never shows control tokens (the view copies an instance's
// identity field by field and leaves lifecycle.Control out), nor request
// bodies. Everything it shows comes from the Dataplane's public
// introspection (Stats, Routes, RecentColdStarts) at the moment of the
// request, so the page costs nothing while nobody looks at it.
//
// [Metrics] serves the Dataplane's scrape-time statistics in the
// Prometheus text format, written with the standard library, for an
// embedder that wants /metrics without a dependency: the same series, with
// the same names and values, as contrib/prometheus's StatsCollector (whose
// tests check that they agree). The histograms need contrib/prometheus.
//
// The admin package sits above the root package, like the examples and the
// contrib adapters: it imports faasplane, and nothing in faasplane imports
// it.
package admin
