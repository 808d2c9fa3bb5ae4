package admin

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	faas "github.com/faasplane/faas"
)

// MetricsConfig configures [Metrics].
type MetricsConfig struct {
	// MaxFunctions bounds the function label's values, as
	// contrib/prometheus does: the first MaxFunctions functions seen get
	// their own series, the others share the series "_other". Default
	// 100.
	MaxFunctions int
}

// Metrics returns a handler of dp's statistics in the Prometheus text
// exposition format (version 0.0.4), written with the standard library:
// the scrape-time series of contrib/prometheus's StatsCollector (requests
// by function and code, instances by state, queue depth, in-flight
// requests, free slots, cold starts, usage in GB-seconds, warm pools,
// shedding), with the same names, labels and values, for embedders that
// want /metrics without a dependency. The histograms (latency, queue wait,
// cold-start steps) need an observer on the request path: use
// contrib/prometheus for those.
func Metrics(dp *faas.Dataplane, cfg MetricsConfig) (http.Handler, error) {
	if dp == nil {
		return nil, invalidConfig("a Dataplane is required")
	}
	if cfg.MaxFunctions < 0 {
		return nil, invalidConfig("MaxFunctions must not be negative")
	}
	if cfg.MaxFunctions == 0 {
		cfg.MaxFunctions = 100
	}
	return &metrics{dp: dp, labels: &labeler{max: cfg.MaxFunctions}}, nil
}

func invalidConfig(msg string) error { return fmt.Errorf("%w: %s", ErrInvalidConfig, msg) }

// ContentType is the content type of the Metrics handler's answers.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

type metrics struct {
	dp     *faas.Dataplane
	labels *labeler
}

// family is one metric family being written.
type family struct {
	name, typ, help string
	samples         []string
}

func (f *family) add(v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(f.name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i] + `="` + escape(labels[i+1]) + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	f.samples = append(f.samples, b.String())
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s := m.dp.Stats()
	fam := func(name, typ, help string) *family { return &family{name: "faas_" + name, typ: typ, help: help} }
	var (
		requests  = fam("requests_total", "counter", "Finished requests by function and code.")
		instances = fam("instances", "gauge", "Instances by function and state (starting: cold starts in flight).")
		inFlight  = fam("in_flight_requests", "gauge", "Requests running on instances.")
		queued    = fam("queue_depth", "gauge", "Requests waiting for capacity.")
		free      = fam("free_slots", "gauge", "Free concurrency slots on routable instances.")
		routable  = fam("routable_instances", "gauge", "Instances that take requests.")
		ejected   = fam("ejected_instances", "gauge", "Instances whose breaker is open or half-open.")
		cold      = fam("cold_starts_total", "counter", "Cold starts by result.")
		billed    = fam("usage_billed_seconds_total", "counter", "Billed duration of the invocations.")
		gbs       = fam("usage_gb_seconds_total", "counter", "Usage in GB-seconds.")
		shedding  = fam("shedding", "gauge", "1 while the load shedder refuses requests.")
		unknown   = fam("unknown_function_requests_total", "counter", "Requests for functions not deployed.")
		pods      = fam("warmpool_pods", "gauge", "Pods of the warm pools by runtime and state.")
		created   = fam("warmpool_created_total", "counter", "Warm pods created.")
		failures  = fam("warmpool_create_failures_total", "counter", "Failed creations of warm pods.")
	)
	type agg struct {
		codes, states                             map[string]float64
		inFlight, queued, free, routable, ejected float64
		coldOK, coldFailed, billed, gbs           float64
	}
	aggs := map[string]*agg{}
	for _, fs := range s.Functions {
		l := m.labels.label(fs.ID)
		a := aggs[l]
		if a == nil {
			a = &agg{codes: map[string]float64{}, states: map[string]float64{"ready": 0, "unhealthy": 0, "draining": 0, "starting": 0}}
			aggs[l] = a
		}
		a.codes["ok"] += float64(fs.OK)
		if fs.Canceled > 0 {
			a.codes["canceled"] += float64(fs.Canceled)
		}
		for c, n := range fs.Errors {
			a.codes[string(c)] += float64(n)
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
		a.gbs += fs.Usage.GBSeconds
	}
	labels := make([]string, 0, len(aggs))
	for l := range aggs {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		a := aggs[l]
		for _, c := range sortedKeys(a.codes) {
			requests.add(a.codes[c], "function", l, "code", c)
		}
		for _, st := range sortedKeys(a.states) {
			instances.add(a.states[st], "function", l, "state", st)
		}
		inFlight.add(a.inFlight, "function", l)
		queued.add(a.queued, "function", l)
		free.add(a.free, "function", l)
		routable.add(a.routable, "function", l)
		ejected.add(a.ejected, "function", l)
		cold.add(a.coldOK, "function", l, "result", "ok")
		cold.add(a.coldFailed, "function", l, "result", "failed")
		billed.add(a.billed, "function", l)
		gbs.add(a.gbs, "function", l)
	}
	sh := 0.0
	if s.Shedding {
		sh = 1
	}
	shedding.add(sh)
	unknown.add(float64(s.UnknownFunction))
	runtimes := make([]string, 0, len(s.Pool.Runtimes))
	for rt := range s.Pool.Runtimes {
		runtimes = append(runtimes, rt)
	}
	sort.Strings(runtimes)
	for _, rt := range runtimes {
		p := s.Pool.Runtimes[rt]
		pods.add(float64(p.Idle), "runtime", rt, "state", "idle")
		pods.add(float64(p.Pending), "runtime", rt, "state", "pending")
		pods.add(float64(p.Creating), "runtime", rt, "state", "creating")
		created.add(float64(p.Created), "runtime", rt)
		failures.add(float64(p.CreateFailures), "runtime", rt)
	}
	var b bytes.Buffer
	for _, f := range []*family{requests, instances, inFlight, queued, free, routable, ejected, cold, billed, gbs, shedding, unknown, pods, created, failures} {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, smp := range f.samples {
			b.WriteString(smp)
			b.WriteByte('\n')
		}
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// labeler bounds the function label first come, first served, as
// contrib/prometheus does.
type labeler struct {
	max   int
	known sync.Map
	full  atomic.Bool
	mu    sync.Mutex
	n     int
}

func (l *labeler) label(fn string) string {
	if _, ok := l.known.Load(fn); ok {
		return fn
	}
	if fn == "_other" || l.full.Load() {
		return "_other"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known.Load(fn); ok {
		return fn
	}
	if l.n >= l.max {
		l.full.Store(true)
		return "_other"
	}
	l.known.Store(fn, struct{}{})
	l.n++
	return fn
}
