package prometheus

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// Config configures [Metrics]. The zero value is ready to use.
type Config struct {
	// Namespace prefixes every metric name. Default "faas".
	Namespace string
	// MaxFunctions bounds the function label's values: the first
	// MaxFunctions functions seen get their own series, the others share
	// the series labelled OtherFunctions. Default 100.
	MaxFunctions int
	// LatencyBuckets are the classic buckets, in seconds, of the request
	// latency and queue-wait histograms. Default DefaultLatencyBuckets.
	LatencyBuckets []float64
	// ColdStartBuckets are those of the cold-start step histograms.
	// Default DefaultColdStartBuckets.
	ColdStartBuckets []float64
	// NativeBucketFactor is the growth factor of the native histograms'
	// buckets (see prometheus.HistogramOpts); default 1.1, a resolution
	// of about 5 %. Negative disables native histograms.
	NativeBucketFactor float64
}

// Defaults of Config.
var (
	DefaultLatencyBuckets   = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	DefaultColdStartBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

const (
	defaultNamespace    = "faas"
	defaultMaxFunctions = 100
	defaultNativeFactor = 1.1
)

// ErrInvalidConfig is wrapped by the errors of New and the collectors'
// constructors.
var ErrInvalidConfig = errors.New("prometheus: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.MaxFunctions < 0 {
		return c, fmt.Errorf("%w: MaxFunctions must not be negative", ErrInvalidConfig)
	}
	if c.Namespace == "" {
		c.Namespace = defaultNamespace
	}
	if c.MaxFunctions == 0 {
		c.MaxFunctions = defaultMaxFunctions
	}
	if c.LatencyBuckets == nil {
		c.LatencyBuckets = DefaultLatencyBuckets
	}
	if c.ColdStartBuckets == nil {
		c.ColdStartBuckets = DefaultColdStartBuckets
	}
	switch {
	case c.NativeBucketFactor == 0:
		c.NativeBucketFactor = defaultNativeFactor
	case c.NativeBucketFactor < 0:
		c.NativeBucketFactor = 0
	case c.NativeBucketFactor <= 1:
		return c, fmt.Errorf("%w: NativeBucketFactor must be above 1 (or negative: off), got %v", ErrInvalidConfig, c.NativeBucketFactor)
	}
	for _, b := range [][]float64{c.LatencyBuckets, c.ColdStartBuckets} {
		for i := 1; i < len(b); i++ {
			if b[i] <= b[i-1] {
				return c, fmt.Errorf("%w: buckets must increase, got %v", ErrInvalidConfig, b)
			}
		}
	}
	return c, nil
}

// How a request found its capacity (label "start").
const (
	startWarm = iota // a free slot at once
	startBusy        // waited for a busy instance's slot
	startCold        // waited for a cold start
	numStarts
)

var startNames = [numStarts]string{"warm", "busy", "cold"}

// The cold-start steps of the step histograms (label "step").
var coldSteps = [...]string{"queue", "take", "fetch", "load", "init", "total"}

// Metrics is a faas.Observer that records, per event, what the Dataplane
// does not count itself, and a prometheus.Collector of those metrics. Its
// methods are safe for concurrent use and do not allocate on the request
// path once a function's series exist.
type Metrics struct {
	cfg    Config
	labels *labeler

	latency, queue *prom.HistogramVec
	starts         *prom.CounterVec
	coldStep       *prom.HistogramVec
	coldFailures   *prom.CounterVec
	shed           *prom.CounterVec
	codeCache      *prom.CounterVec
	billedVec      *prom.CounterVec
	transitions    *prom.CounterVec
	routeEvents    *prom.CounterVec

	series   sync.Map        // function label → *fnSeries
	byID     sync.Map        // function ID → *fnSeries, for the labelled IDs
	billedBy [3]prom.Counter // by faas.BillingSource
}

// fnSeries are one function label's series, resolved once.
type fnSeries struct {
	label    string
	latency  prom.Observer
	queue    prom.Observer
	starts   [numStarts]prom.Counter
	coldStep [len(coldSteps)]prom.Observer
}

// New builds the Metrics. Give it to faas.Config.Observer and register it
// with a prometheus.Registerer.
func New(cfg Config) (*Metrics, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ns := cfg.Namespace
	hist := func(name, help string, buckets []float64, labels ...string) *prom.HistogramVec {
		return prom.NewHistogramVec(prom.HistogramOpts{
			Namespace: ns, Name: name, Help: help, Buckets: buckets,
			NativeHistogramBucketFactor:     cfg.NativeBucketFactor,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, labels)
	}
	counter := func(name, help string, labels ...string) *prom.CounterVec {
		return prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		cfg: cfg, labels: newLabeler(cfg.MaxFunctions),
		latency: hist("request_duration_seconds", "Latency of the requests the function answered, from arrival to the end of the response.",
			cfg.LatencyBuckets, "function"),
		queue: hist("request_queue_seconds", "Time requests waited for capacity (a cold start or a busy instance).",
			cfg.LatencyBuckets, "function"),
		starts: counter("request_starts_total", "Requests sent to an instance, by how they found capacity: warm (a free slot), busy (waited for a busy instance), cold (waited for a cold start).",
			"function", "start"),
		coldStep: hist("cold_start_duration_seconds", "Duration of the steps of successful cold starts (queue, take, fetch, load, init) and their total.",
			cfg.ColdStartBuckets, "function", "step"),
		coldFailures: counter("cold_start_failures_total", "Failed cold starts by the step that failed.", "function", "step"),
		shed: counter("shed_total", "Requests refused by admission, by reason (overload, over_share, priority: the load shedder; concurrency_limit: the function's limit or queue; queue_timeout: no capacity in time) and caller class.",
			"function", "reason", "class"),
		codeCache:   counter("code_cache_total", "Code fetches of cold starts by cache tier and result (tier node: the agent's node cache).", "tier", "result"),
		billedVec:   counter("billed_requests_total", "Requests billed, by who measured the billed duration (agent, dataplane).", "source"),
		transitions: counter("instance_transitions_total", "Instance state transitions by target state.", "state"),
		routeEvents: counter("route_events_total", "Route events by kind and cause.", "kind", "cause"),
	}
	for _, src := range []faas.BillingSource{faas.BilledByAgent, faas.BilledByDataplane} {
		m.billedBy[src] = m.billedVec.WithLabelValues(src.String())
	}
	return m, nil
}

func (m *Metrics) vecs() []prom.Collector {
	return []prom.Collector{m.latency, m.queue, m.starts, m.coldStep, m.coldFailures, m.shed, m.codeCache, m.billedVec, m.transitions, m.routeEvents}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prom.Desc) {
	for _, c := range m.vecs() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prom.Metric) {
	for _, c := range m.vecs() {
		c.Collect(ch)
	}
}

// label returns the bounded function label of fn.
func (m *Metrics) label(fn string) string { return m.labels.label(fn) }

// seriesOf returns the series of fn's label, creating them on first use:
// one map lookup for a labelled function.
func (m *Metrics) seriesOf(fn string) *fnSeries {
	if s, ok := m.byID.Load(fn); ok {
		return s.(*fnSeries)
	}
	l := m.labels.label(fn)
	if l == fn {
		defer func() { m.byID.Store(fn, m.seriesOfLabel(l)) }()
	}
	return m.seriesOfLabel(l)
}

func (m *Metrics) seriesOfLabel(l string) *fnSeries {
	if s, ok := m.series.Load(l); ok {
		return s.(*fnSeries)
	}
	s := &fnSeries{label: l, latency: m.latency.WithLabelValues(l), queue: m.queue.WithLabelValues(l)}
	for i, n := range startNames {
		s.starts[i] = m.starts.WithLabelValues(l, n)
	}
	for i, n := range coldSteps {
		s.coldStep[i] = m.coldStep.WithLabelValues(l, n)
	}
	actual, _ := m.series.LoadOrStore(l, s)
	return actual.(*fnSeries)
}

// ObserveRequest records a finished request.
func (m *Metrics) ObserveRequest(r faas.RequestRecord) {
	s := m.seriesOf(r.FunctionID)
	if r.Code == "" && !r.Canceled {
		s.latency.Observe(r.Latency.Seconds())
	}
	if !r.QueueStart.IsZero() {
		end := r.QueueEnd
		if end.IsZero() { // the wait failed: it lasted until the end
			end = r.Start.Add(r.Latency)
		}
		s.queue.Observe(max(end.Sub(r.QueueStart), 0).Seconds())
	}
	if !r.Sent.IsZero() {
		switch {
		case r.Cold:
			s.starts[startCold].Inc()
		case r.Waited:
			s.starts[startBusy].Inc()
		default:
			s.starts[startWarm].Inc()
		}
	}
	if reason := refusal(r); reason != "" {
		m.shed.WithLabelValues(s.label, reason, r.Priority.String()).Inc()
	}
	if c := r.BilledBy; c != faas.BilledByNone && int(c) < len(m.billedBy) {
		m.billedBy[c].Inc()
	}
}

// refusal names why admission refused r, or "" when it did not.
func refusal(r faas.RequestRecord) string {
	switch r.Code {
	case lifecycle.CodeShed:
		return shedReasonName(r.ShedReason)
	case lifecycle.CodeConcurrencyLimit:
		if r.Sent.IsZero() {
			return "concurrency_limit"
		}
	case lifecycle.CodeTimeout:
		if r.Sent.IsZero() && !r.QueueStart.IsZero() {
			return "queue_timeout"
		}
	}
	return ""
}

// ObserveColdStart records a finished cold start.
func (m *Metrics) ObserveColdStart(r coldstart.Report) {
	if r.Err != nil {
		step := "unknown"
		if se := (*coldstart.StepError)(nil); errors.As(r.Err, &se) {
			step = string(se.Step)
		}
		m.coldFailures.WithLabelValues(m.label(r.FunctionID), step).Inc()
		return
	}
	s := m.seriesOf(r.FunctionID)
	b := r.Breakdown
	for i, d := range [...]time.Duration{b.Queue, b.Take, b.Fetch, b.Load, b.Init, b.Total} {
		s.coldStep[i].Observe(d.Seconds())
	}
	result := "miss"
	if b.CacheHit {
		result = "hit"
	}
	m.codeCache.WithLabelValues("node", result).Inc()
}

// ObserveInstance counts an instance's state transition.
func (m *Metrics) ObserveInstance(_ *lifecycle.Instance, t lifecycle.Transition) {
	m.transitions.WithLabelValues(strings.ToLower(t.To.String())).Inc()
}

// ObserveRoute counts a route event.
func (m *Metrics) ObserveRoute(e router.Event) {
	m.routeEvents.WithLabelValues(e.Kind.String(), e.Cause.String()).Inc()
}

// shedReasonName is the label of a load shedder's reason.
func shedReasonName(r loadshed.Reason) string {
	switch r {
	case loadshed.ReasonOverShare:
		return "over_share"
	case loadshed.ReasonPriority:
		return "priority"
	}
	return "overload"
}

var _ faas.Observer = (*Metrics)(nil)
