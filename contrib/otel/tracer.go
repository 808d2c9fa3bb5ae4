package otel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

// The spans' names.
const (
	SpanInvoke    = "faas.invoke"
	SpanAdmission = "faas.admission"
	SpanQueue     = "faas.queue"
	SpanColdStart = "faas.coldstart"
	SpanTake      = "faas.coldstart.take"
	SpanFetch     = "faas.coldstart.fetch"
	SpanLoad      = "faas.coldstart.load"
	SpanInit      = "faas.coldstart.init"
	SpanProxy     = "faas.proxy"
)

// Attribute keys: OpenTelemetry's semantic conventions for FaaS where they
// have one (faas.name, faas.invocation_id, faas.coldstart, faas.instance,
// faas.max_memory), faasplane's own otherwise.
const (
	AttrFunction   = attribute.Key("faas.name")
	AttrInvocation = attribute.Key("faas.invocation_id")
	AttrColdStart  = attribute.Key("faas.coldstart")
	AttrInstance   = attribute.Key("faas.instance")
	AttrMaxMemory  = attribute.Key("faas.max_memory")
	AttrCaller     = attribute.Key("faasplane.caller")
	AttrNode       = attribute.Key("faasplane.node")
	AttrGeneration = attribute.Key("faasplane.generation")
	AttrCode       = attribute.Key("faasplane.error_code")
	AttrBilledMs   = attribute.Key("faasplane.billed_ms")
	AttrBilledBy   = attribute.Key("faasplane.billed_by")
	AttrWaited     = attribute.Key("faasplane.waited")
	AttrCacheHit   = attribute.Key("faasplane.code_cache_hit")
	AttrPod        = attribute.Key("faasplane.pod")
)

// TracerConfig configures a [Tracer].
type TracerConfig struct {
	// TracerProvider makes the spans. Required.
	TracerProvider trace.TracerProvider
	// Propagator reads and writes the trace context on requests. Default:
	// W3C Trace Context (traceparent, tracestate).
	Propagator propagation.TextMapPropagator
	// Grace bounds how long an invocation's span waits, after the
	// gateway's handler returned, for the invocation's record, which may
	// follow it by moments; then the span ends without its steps (requests
	// the Dataplane does not record, such as those for undeployed
	// functions). Default 1 s.
	Grace time.Duration
}

// Tracer is a faas.Observer that turns each invocation's record into its
// span tree. Its methods are safe for concurrent use.
type Tracer struct {
	faas.NopObserver
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	grace  time.Duration

	// pending holds the invocation spans started by Handler and Invoke
	// that wait for their record, by request ID.
	pending sync.Map
	prefix  string // of generated request IDs
	seq     atomic.Uint64
}

// pendingSpan is an invocation's span waiting for its record; whoever
// claims it (the record, or the grace timer) ends it.
type pendingSpan struct {
	ctx     context.Context
	span    trace.Span
	claimed atomic.Bool
}

// ErrNoTracerProvider is returned by NewTracer without a TracerProvider.
var ErrNoTracerProvider = errors.New("otel: TracerConfig.TracerProvider is required")

// NewTracer returns a Tracer. Give it to faas.Config.Observer (with
// faas.Observers to keep another observer), and wrap the gateway with its
// Handler.
func NewTracer(cfg TracerConfig) (*Tracer, error) {
	if cfg.TracerProvider == nil {
		return nil, ErrNoTracerProvider
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("otel: TracerConfig.Grace must not be negative, got %v", cfg.Grace)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = propagation.TraceContext{}
	}
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails
	return &Tracer{
		tracer: cfg.TracerProvider.Tracer("github.com/faasplane/faas/contrib/otel"),
		prop:   cfg.Propagator, grace: cfg.Grace, prefix: "otel-" + hex.EncodeToString(b[:]) + "-",
	}, nil
}

// Handler wraps the Dataplane's gateway (or anything that serves
// invocations): it starts each request's invocation span as a child of the
// trace context the request carries, and replaces that context on the
// request with the span's, so that the function receives it. A request
// without a usable X-Faas-Request-Id gets one, which names its record.
func (t *Tracer) Handler(gateway http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, SpanInvoke, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		r = r.Clone(ctx)
		p := &pendingSpan{ctx: ctx, span: span}
		rid := t.register(r.Header.Get(lifecycle.HeaderRequestID), p)
		r.Header.Set(lifecycle.HeaderRequestID, rid)
		t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
		sw := &statusWriter{ResponseWriter: w}
		defer func() { t.settle(rid, p, time.Now(), sw.status) }()
		gateway.ServeHTTP(sw, r)
	})
}

// Invoke runs dp.Invoke(ctx, req) within an invocation span that is a
// child of ctx's span, and passes the span's context to the function in
// the request's headers. req is not modified.
func (t *Tracer) Invoke(ctx context.Context, dp *faas.Dataplane, req *faas.Request) (*faas.Response, error) {
	ctx, span := t.tracer.Start(ctx, SpanInvoke, trace.WithSpanKind(trace.SpanKindInternal))
	p := &pendingSpan{ctx: ctx, span: span}
	r := *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.RequestID = t.register(req.RequestID, p)
	t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := dp.Invoke(ctx, &r)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.settle(r.RequestID, p, time.Now(), status)
	return resp, err
}

// register files p under rid, or under a new request ID when rid is not
// one the Dataplane keeps or is already pending, and returns the ID.
func (t *Tracer) register(rid string, p *pendingSpan) string {
	if !validRequestID(rid) {
		rid = t.newID()
	}
	for {
		if _, loaded := t.pending.LoadOrStore(rid, p); !loaded {
			return rid
		}
		rid = t.newID()
	}
}

func (t *Tracer) newID() string { return t.prefix + strconv.FormatUint(t.seq.Add(1), 36) }

// settle ends p's span when its record has not claimed it within Grace
// after the request ended at end.
func (t *Tracer) settle(rid string, p *pendingSpan, end time.Time, status int) {
	if p.claimed.Load() {
		return
	}
	time.AfterFunc(t.grace, func() {
		if !p.claimed.CompareAndSwap(false, true) {
			return
		}
		t.pending.CompareAndDelete(rid, p)
		if status != 0 {
			p.span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		p.span.End(trace.WithTimestamp(end))
	})
}

// ObserveRequest ends the invocation's span with the steps of its record:
// the span Handler or Invoke started, or a new one.
func (t *Tracer) ObserveRequest(rec faas.RequestRecord) {
	var ctx context.Context
	var span trace.Span
	if v, ok := t.pending.Load(rec.RequestID); ok {
		if p := v.(*pendingSpan); p.claimed.CompareAndSwap(false, true) {
			t.pending.CompareAndDelete(rec.RequestID, p)
			ctx, span = p.ctx, p.span
		}
	}
	if span == nil {
		ctx, span = t.tracer.Start(context.Background(), SpanInvoke, trace.WithTimestamp(rec.Start), trace.WithSpanKind(trace.SpanKindServer))
	}
	end := rec.Start.Add(rec.Latency)
	span.SetAttributes(
		AttrFunction.String(rec.FunctionID), AttrInvocation.String(rec.RequestID), AttrCaller.String(rec.Caller),
		AttrColdStart.Bool(rec.Cold), AttrWaited.Bool(rec.Waited), AttrGeneration.Int64(int64(rec.Generation)),
		AttrMaxMemory.Int64(rec.MemoryBytes), AttrBilledMs.Int64(rec.Billed.Milliseconds()), AttrBilledBy.String(rec.BilledBy.String()),
	)
	if rec.InstanceID != "" {
		span.SetAttributes(AttrInstance.String(rec.InstanceID), AttrNode.String(rec.Node))
	}
	switch {
	case rec.Code != "":
		span.SetAttributes(AttrCode.String(string(rec.Code)))
		span.SetStatus(codes.Error, string(rec.Code))
	case rec.Canceled:
		span.SetStatus(codes.Error, "canceled")
	}
	t.steps(ctx, rec, end)
	span.End(trace.WithTimestamp(end))
}

// steps adds the invocation's children under ctx.
func (t *Tracer) steps(ctx context.Context, rec faas.RequestRecord, end time.Time) {
	admitted := end
	if !rec.Sent.IsZero() {
		admitted = rec.Sent
	}
	t.step(ctx, SpanAdmission, rec.Start, admitted)
	if !rec.QueueStart.IsZero() {
		qend := rec.QueueEnd
		if qend.IsZero() {
			qend = end
		}
		t.step(ctx, SpanQueue, rec.QueueStart, qend)
	}
	if cs := rec.ColdStart; cs != nil {
		b := cs.Breakdown
		cctx := t.step(ctx, SpanColdStart, cs.Start, cs.End,
			AttrInstance.String(cs.InstanceID), AttrNode.String(cs.Node), AttrPod.String(cs.PodID), AttrCacheHit.Bool(b.CacheHit))
		take := cs.Start.Add(b.Queue)
		load := take.Add(b.Take)
		init := load.Add(b.Load)
		t.step(cctx, SpanTake, take, load)
		t.step(cctx, SpanFetch, load, load.Add(b.Fetch), AttrCacheHit.Bool(b.CacheHit))
		t.step(cctx, SpanLoad, load, init)
		t.step(cctx, SpanInit, init, init.Add(b.Init))
	}
	if !rec.Sent.IsZero() {
		ret := rec.Returned
		if ret.IsZero() {
			ret = end
		}
		t.step(ctx, SpanProxy, rec.Sent, ret, AttrInstance.String(rec.InstanceID), AttrNode.String(rec.Node), AttrBilledMs.Int64(rec.Billed.Milliseconds()))
	}
}

// step records a finished child span of ctx and returns its context.
func (t *Tracer) step(ctx context.Context, name string, start, end time.Time, attrs ...attribute.KeyValue) context.Context {
	ctx, s := t.tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	s.End(trace.WithTimestamp(end))
	return ctx
}

// validRequestID is the gateway's rule for a request ID it keeps: 1 to
// 128 bytes of printable ASCII without spaces.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// statusWriter remembers the status of a response; Unwrap lets
// http.ResponseController reach the writer's flushing and deadlines.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush makes the writer an http.Flusher for handlers that assert it.
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

var _ faas.Observer = (*Tracer)(nil)
