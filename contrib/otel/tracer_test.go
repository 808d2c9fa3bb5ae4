package otel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	faasotel "github.com/faasplane/faas/contrib/otel"
	"github.com/faasplane/faas/lifecycle"
)

func newTestTracer(t *testing.T, grace time.Duration) (*faasotel.Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr, err := faasotel.NewTracer(faasotel.TracerConfig{TracerProvider: tp, Grace: grace})
	require.NoError(t, err)
	return tr, exp
}

func TestNewTracerValidates(t *testing.T) {
	_, err := faasotel.NewTracer(faasotel.TracerConfig{})
	require.ErrorIs(t, err, faasotel.ErrNoTracerProvider)
	_, err = faasotel.NewTracer(faasotel.TracerConfig{TracerProvider: sdktrace.NewTracerProvider(), Grace: -1})
	require.Error(t, err)
	_, err = faasotel.NewMetrics(faasotel.MetricsConfig{})
	require.ErrorIs(t, err, faasotel.ErrNoMeterProvider)
}

// TestSpanStepsFollowTheRecord: the children's times are the record's, the
// cold start's steps laid out from its breakdown.
func TestSpanStepsFollowTheRecord(t *testing.T) {
	tr, exp := newTestTracer(t, time.Second)
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	cs := &faas.ColdStartRecord{InstanceID: "i-1", Node: "n1", PodID: "p1", Start: t0.Add(-2 * ms), End: t0.Add(40 * ms),
		Breakdown: coldstart.Breakdown{Queue: ms, Take: 2 * ms, Fetch: 5 * ms, Load: 20 * ms, Init: 10 * ms, Total: 42 * ms}}
	tr.ObserveRequest(faas.RequestRecord{
		FunctionID: "f", RequestID: "r1", Start: t0, Latency: 50 * ms, Waited: true, Cold: true, ColdStart: cs,
		QueueStart: t0.Add(ms), QueueEnd: t0.Add(41 * ms), Sent: t0.Add(41 * ms), Returned: t0.Add(49 * ms),
		InstanceID: "i-1", Node: "n1", Billed: 8 * ms, BilledBy: faas.BilledByAgent, MemoryBytes: 128 << 20,
	})
	spans := exp.GetSpans()
	at := func(name string) (time.Duration, time.Duration) {
		for _, s := range spans {
			if s.Name == name {
				return s.StartTime.Sub(t0), s.EndTime.Sub(t0)
			}
		}
		t.Fatalf("no span %s", name)
		return 0, 0
	}
	for _, tt := range []struct {
		name       string
		start, end time.Duration
	}{
		{faasotel.SpanInvoke, 0, 50 * ms},
		{faasotel.SpanAdmission, 0, 41 * ms},
		{faasotel.SpanQueue, ms, 41 * ms},
		{faasotel.SpanColdStart, -2 * ms, 40 * ms},
		{faasotel.SpanTake, -ms, ms},
		{faasotel.SpanLoad, ms, 21 * ms},
		{faasotel.SpanFetch, ms, 6 * ms},
		{faasotel.SpanInit, 21 * ms, 31 * ms},
		{faasotel.SpanProxy, 41 * ms, 49 * ms},
	} {
		start, end := at(tt.name)
		assert.Equal(t, tt.start, start, "%s start", tt.name)
		assert.Equal(t, tt.end, end, "%s end", tt.name)
	}
	root := spans[len(spans)-1]
	require.Equal(t, faasotel.SpanInvoke, root.Name, "the invocation ends last")
	assert.Equal(t, codes.Unset, root.Status.Code)
	assert.Equal(t, int64(8), attr(root, string(faasotel.AttrBilledMs)))
	assert.Equal(t, int64(128<<20), attr(root, string(faasotel.AttrMaxMemory)))
}

func TestRefusedRequestHasOnlyAdmission(t *testing.T) {
	tr, exp := newTestTracer(t, time.Second)
	t0 := time.Unix(1_000_000, 0)
	tr.ObserveRequest(faas.RequestRecord{FunctionID: "f", RequestID: "r1", Start: t0, Latency: time.Millisecond, Code: lifecycle.CodeShed})
	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	assert.Equal(t, faasotel.SpanAdmission, spans[0].Name)
	assert.Equal(t, time.Millisecond, spans[0].EndTime.Sub(t0), "admission lasted until the refusal")
	assert.Equal(t, codes.Error, spans[1].Status.Code)
	assert.Equal(t, "shed", attr(spans[1], string(faasotel.AttrCode)))
}

// TestHandlerHandsTheSpanToTheGateway: what the gateway behind Handler
// sees (a request ID, the invocation span's traceparent), and the grace
// that ends a span whose record never comes.
func TestHandlerHandsTheSpanToTheGateway(t *testing.T) {
	tr, exp := newTestTracer(t, 10*time.Millisecond)
	var got http.Header
	record := true
	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if record { // as the Dataplane does before it returns
			tr.ObserveRequest(faas.RequestRecord{FunctionID: "f", RequestID: r.Header.Get(lifecycle.HeaderRequestID), Start: time.Now()})
		}
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(tr.Handler(gateway))
	defer srv.Close()

	res, err := http.Get(srv.URL)
	require.NoError(t, err)
	res.Body.Close()
	rid := got.Get(lifecycle.HeaderRequestID)
	require.NotEmpty(t, rid, "a request without an ID gets one")
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(got)))
	require.True(t, sc.IsValid(), "the gateway sees the invocation span's traceparent")
	spans := exp.GetSpans()
	var root tracetest.SpanStub
	for _, s := range spans {
		if s.Name == faasotel.SpanInvoke {
			root = s
		}
	}
	assert.Equal(t, sc.SpanID(), root.SpanContext.SpanID())
	assert.Equal(t, rid, attr(root, string(faasotel.AttrInvocation)))

	// No record (say, an undeployed function): the span ends after the
	// grace, with the response's status.
	exp.Reset()
	record = false
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set(lifecycle.HeaderRequestID, "bad id with spaces")
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.NotEqual(t, "bad id with spaces", got.Get(lifecycle.HeaderRequestID), "an ID the gateway would not keep is replaced")
	require.Eventually(t, func() bool { return len(exp.GetSpans()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, int64(http.StatusNotFound), attr(exp.GetSpans()[0], "http.response.status_code"))
}

// FuzzHandler: whatever trace context and request ID a client sends, the
// gateway behind Handler gets a request ID it keeps and a valid
// traceparent, and nothing panics.
func FuzzHandler(f *testing.F) {
	for _, s := range [][2]string{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "id-1"},
		{"00-00000000000000000000000000000000-0000000000000000-00", ""},
		{"garbage", "\x00\x01"},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "x y"},
	} {
		f.Add(s[0], s[1])
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr, err := faasotel.NewTracer(faasotel.TracerConfig{TracerProvider: tp, Grace: time.Millisecond})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, traceparent, rid string) {
		var got http.Header
		h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header }))
		req := httptest.NewRequest(http.MethodGet, "/invoke/f", nil)
		req.Header["Traceparent"] = []string{traceparent}
		req.Header[lifecycle.HeaderRequestID] = []string{rid}
		h.ServeHTTP(httptest.NewRecorder(), req)
		id := got.Get(lifecycle.HeaderRequestID)
		require.NotEmpty(t, id)
		require.LessOrEqual(t, len(id), 128)
		for i := 0; i < len(id); i++ {
			require.True(t, id[i] > ' ' && id[i] < 0x7f)
		}
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(got)))
		require.True(t, sc.IsValid())
	})
}
