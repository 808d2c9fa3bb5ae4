package otel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/router"
)

// MetricsConfig configures [Metrics].
type MetricsConfig struct {
	// MeterProvider makes the instruments. Required.
	MeterProvider metric.MeterProvider
	// MaxFunctions bounds the faas.name attribute's values: the first
	// MaxFunctions functions seen get their own, the others share
	// OtherFunctions. Default 100.
	MaxFunctions int
}

// OtherFunctions is the faas.name of the functions beyond MaxFunctions.
const OtherFunctions = "_other"

// Metrics is a faas.Observer that records the Dataplane's events as OTel
// instruments (the alternative to contrib/prometheus's client_golang
// metrics). Its methods are safe for concurrent use.
type Metrics struct {
	labels *labeler

	requests, starts, shed, billed, gbSeconds, coldFailures, codeCache, transitions, routeEvents metric.Float64Counter
	latency, queue, coldStep                                                                     metric.Float64Histogram
	meter                                                                                        metric.Meter

	attrs sync.Map // function label → *fnAttrs
}

// fnAttrs are one function label's precomputed attribute sets.
type fnAttrs struct {
	fn     metric.MeasurementOption
	ok     metric.MeasurementOption
	starts [3]metric.MeasurementOption // warm, busy, cold
	label  string
}

// ErrNoMeterProvider is returned by NewMetrics without a MeterProvider.
var ErrNoMeterProvider = errors.New("otel: MetricsConfig.MeterProvider is required")

// NewMetrics returns the OTel metrics. Give them to faas.Config.Observer
// and, once the Dataplane exists, call ObserveDataplane.
func NewMetrics(cfg MetricsConfig) (*Metrics, error) {
	if cfg.MeterProvider == nil {
		return nil, ErrNoMeterProvider
	}
	if cfg.MaxFunctions < 0 {
		return nil, fmt.Errorf("otel: MaxFunctions must not be negative, got %d", cfg.MaxFunctions)
	}
	if cfg.MaxFunctions == 0 {
		cfg.MaxFunctions = 100
	}
	mt := cfg.MeterProvider.Meter("github.com/faasplane/faas/contrib/otel")
	m := &Metrics{labels: newLabeler(cfg.MaxFunctions), meter: mt}
	var errs []error
	counter := func(name, unit, desc string) metric.Float64Counter {
		c, err := mt.Float64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	hist := func(name, desc string, bounds []float64) metric.Float64Histogram {
		h, err := mt.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	lat := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	cold := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m.requests = counter("faas.requests", "{request}", "Finished requests by function and code (ok, canceled or the error code).")
	m.starts = counter("faas.request.starts", "{request}", "Requests sent to an instance by how they found capacity (warm, busy, cold).")
	m.shed = counter("faas.shed", "{request}", "Requests refused by admission, by reason and caller class.")
	m.billed = counter("faas.usage.billed", "s", "Billed duration of the invocations.")
	m.gbSeconds = counter("faas.usage.gb_seconds", "GB.s", "Usage: billed seconds times memory GiB.")
	m.coldFailures = counter("faas.cold_start.failures", "{cold_start}", "Failed cold starts by the step that failed.")
	m.codeCache = counter("faas.code_cache", "{lookup}", "Code fetches of cold starts by cache tier and result.")
	m.transitions = counter("faas.instance.transitions", "{transition}", "Instance state transitions by target state.")
	m.routeEvents = counter("faas.route.events", "{event}", "Route events by kind and cause.")
	m.latency = hist("faas.request.duration", "Latency of the requests the function answered.", lat)
	m.queue = hist("faas.request.queue", "Time requests waited for capacity.", lat)
	m.coldStep = hist("faas.cold_start.duration", "Duration of the steps of successful cold starts and their total.", cold)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otel: instruments: %w", err)
	}
	return m, nil
}

func (m *Metrics) attrsOf(fn string) *fnAttrs {
	l := m.labels.label(fn)
	if a, ok := m.attrs.Load(l); ok {
		return a.(*fnAttrs)
	}
	a := &fnAttrs{label: l,
		fn: metric.WithAttributeSet(attribute.NewSet(AttrFunction.String(l))),
		ok: metric.WithAttributeSet(attribute.NewSet(AttrFunction.String(l), attribute.String("code", "ok"))),
	}
	for i, s := range []string{"warm", "busy", "cold"} {
		a.starts[i] = metric.WithAttributeSet(attribute.NewSet(AttrFunction.String(l), attribute.String("start", s)))
	}
	actual, _ := m.attrs.LoadOrStore(l, a)
	return actual.(*fnAttrs)
}

// ObserveRequest records a finished request.
func (m *Metrics) ObserveRequest(r faas.RequestRecord) {
	ctx := context.Background()
	a := m.attrsOf(r.FunctionID)
	switch {
	case r.Canceled:
		m.requests.Add(ctx, 1, metric.WithAttributes(AttrFunction.String(a.label), attribute.String("code", "canceled")))
	case r.Code == "":
		m.requests.Add(ctx, 1, a.ok)
		m.latency.Record(ctx, r.Latency.Seconds(), a.fn)
	default:
		m.requests.Add(ctx, 1, metric.WithAttributes(AttrFunction.String(a.label), attribute.String("code", string(r.Code))))
	}
	if !r.QueueStart.IsZero() {
		end := r.QueueEnd
		if end.IsZero() {
			end = r.Start.Add(r.Latency)
		}
		m.queue.Record(ctx, max(end.Sub(r.QueueStart), 0).Seconds(), a.fn)
	}
	if !r.Sent.IsZero() {
		k := 0
		switch {
		case r.Cold:
			k = 2
		case r.Waited:
			k = 1
		}
		m.starts.Add(ctx, 1, a.starts[k])
	}
	if reason := refusal(r); reason != "" {
		m.shed.Add(ctx, 1, metric.WithAttributes(AttrFunction.String(a.label), attribute.String("reason", reason), attribute.String("class", r.Priority.String())))
	}
	if r.Billed > 0 {
		m.billed.Add(ctx, r.Billed.Seconds(), a.fn)
		m.gbSeconds.Add(ctx, float64(r.Billed.Milliseconds()*(r.MemoryBytes>>20))/(1024*1000), a.fn)
	}
}

// refusal names why admission refused r, or "" (as contrib/prometheus).
func refusal(r faas.RequestRecord) string {
	switch r.Code {
	case lifecycle.CodeShed:
		switch r.ShedReason {
		case loadshed.ReasonOverShare:
			return "over_share"
		case loadshed.ReasonPriority:
			return "priority"
		}
		return "overload"
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
	ctx := context.Background()
	a := m.attrsOf(r.FunctionID)
	if r.Err != nil {
		step := "unknown"
		if se := (*coldstart.StepError)(nil); errors.As(r.Err, &se) {
			step = string(se.Step)
		}
		m.coldFailures.Add(ctx, 1, metric.WithAttributes(AttrFunction.String(a.label), attribute.String("step", step)))
		return
	}
	b := r.Breakdown
	for i, d := range [...]time.Duration{b.Queue, b.Take, b.Fetch, b.Load, b.Init, b.Total} {
		m.coldStep.Record(ctx, d.Seconds(), metric.WithAttributes(AttrFunction.String(a.label), attribute.String("step", coldSteps[i])))
	}
	result := "miss"
	if b.CacheHit {
		result = "hit"
	}
	m.codeCache.Add(ctx, 1, metric.WithAttributes(attribute.String("tier", "node"), attribute.String("result", result)))
}

var coldSteps = [...]string{"queue", "take", "fetch", "load", "init", "total"}

// ObserveInstance counts an instance's state transition.
func (m *Metrics) ObserveInstance(_ *lifecycle.Instance, t lifecycle.Transition) {
	m.transitions.Add(context.Background(), 1, metric.WithAttributes(attribute.String("state", strings.ToLower(t.To.String()))))
}

// ObserveRoute counts a route event.
func (m *Metrics) ObserveRoute(e router.Event) {
	m.routeEvents.Add(context.Background(), 1, metric.WithAttributes(attribute.String("kind", e.Kind.String()), attribute.String("cause", e.Cause.String())))
}

// ObserveDataplane adds dp's statistics as observable instruments, read
// at each collection: instances by state, queue depth and in-flight
// requests per function, warm-pool pods per runtime, whether the shedder
// sheds. Unregister the returned registration before dp goes away.
func (m *Metrics) ObserveDataplane(dp *faas.Dataplane) (metric.Registration, error) {
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	instances := gauge("faas.instances", "{instance}", "Instances by function and state (starting: cold starts in flight).")
	queued := gauge("faas.queue.depth", "{request}", "Requests waiting for capacity.")
	inFlight := gauge("faas.requests.in_flight", "{request}", "Requests running on instances.")
	pool := gauge("faas.warmpool.pods", "{pod}", "Warm-pool pods by runtime and state.")
	shedding := gauge("faas.shedding", "1", "1 while the load shedder refuses requests.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otel: instruments: %w", err)
	}
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := dp.Stats()
		sums := map[string]map[string]int64{}
		q, f := map[string]int64{}, map[string]int64{}
		for _, fs := range s.Functions {
			l := m.labels.label(fs.ID)
			st := sums[l]
			if st == nil {
				st = map[string]int64{"ready": 0, "starting": 0}
				sums[l] = st
			}
			for state, n := range fs.Instances {
				st[strings.ToLower(state.String())] += int64(n)
			}
			st["starting"] += int64(fs.Starting)
			q[l] += int64(fs.Queued)
			f[l] += int64(fs.InFlight)
		}
		for l, st := range sums {
			for state, n := range st {
				o.ObserveInt64(instances, n, metric.WithAttributes(AttrFunction.String(l), attribute.String("state", state)))
			}
			o.ObserveInt64(queued, q[l], metric.WithAttributes(AttrFunction.String(l)))
			o.ObserveInt64(inFlight, f[l], metric.WithAttributes(AttrFunction.String(l)))
		}
		for rt, p := range s.Pool.Runtimes {
			for state, n := range map[string]int{"idle": p.Idle, "pending": p.Pending, "creating": p.Creating} {
				o.ObserveInt64(pool, int64(n), metric.WithAttributes(attribute.String("runtime", rt), attribute.String("state", state)))
			}
		}
		var sh int64
		if s.Shedding {
			sh = 1
		}
		o.ObserveInt64(shedding, sh)
		return nil
	}, instances, queued, inFlight, pool, shedding)
}

var _ faas.Observer = (*Metrics)(nil)
