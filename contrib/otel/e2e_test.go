package otel_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	faas "github.com/faasplane/faas"
	faasotel "github.com/faasplane/faas/contrib/otel"
	faasprom "github.com/faasplane/faas/contrib/prometheus"
	"github.com/faasplane/faas/lifecycle"
)

// tree is the exported spans of one trace, by span ID.
type tree struct {
	spans map[trace.SpanID]tracetest.SpanStub
}

func traceOf(spans tracetest.SpanStubs, id trace.TraceID) tree {
	t := tree{spans: map[trace.SpanID]tracetest.SpanStub{}}
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			t.spans[s.SpanContext.SpanID()] = s
		}
	}
	return t
}

// named returns the one span called name.
func (t tree) named(tb testing.TB, name string) tracetest.SpanStub {
	tb.Helper()
	var out []tracetest.SpanStub
	for _, s := range t.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	require.Len(tb, out, 1, "one %s span", name)
	return out[0]
}

// children returns the sorted names of the children of s.
func (t tree) children(s tracetest.SpanStub) []string {
	var names []string
	for _, c := range t.spans {
		if c.Parent.SpanID() == s.SpanContext.SpanID() {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return names
}

func attr(s tracetest.SpanStub, key string) any {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.AsInterface()
		}
	}
	return nil
}

// waitForInvoke waits until the invocation span of request rid is
// exported and returns it.
func waitForInvoke(t *testing.T, exp *tracetest.InMemoryExporter, rid string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == faasotel.SpanInvoke && attr(s, string(faasotel.AttrInvocation)) == rid {
				found = s
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond)
	return found
}

// TestSpanTreesAndTraceparentEndToEnd: the span tree of a cold invocation
// and of a warm one, through a real gateway, agent and function, and the
// W3C traceparent that reaches the function.
func TestSpanTreesAndTraceparentEndToEnd(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	tr, err := faasotel.NewTracer(faasotel.TracerConfig{TracerProvider: tp})
	require.NoError(t, err)
	e := newEnv(t, func(c *faas.Config) { c.Observer = tr })
	e.deploy(specFor("echo", "echoheaders"))
	gw := httptest.NewServer(tr.Handler(e.dp))
	defer gw.Close()

	// 1. Cold, through the gateway, continuing the caller's trace.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodGet, gw.URL+"/invoke/echo", nil)
	require.NoError(t, err)
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	req.Header.Set(lifecycle.HeaderRequestID, "cold-1")
	resp, err := gw.Client().Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var seen http.Header
	require.NoError(t, json.Unmarshal(body, &seen))

	root := waitForInvoke(t, exp, "cold-1")
	assert.Equal(t, callerTrace, root.SpanContext.TraceID().String(), "the caller's trace goes on")
	assert.Equal(t, callerSpan, root.Parent.SpanID().String(), "as a child of the caller's span")
	assert.True(t, root.Parent.IsRemote())
	assert.Equal(t, "00-"+callerTrace+"-"+root.SpanContext.SpanID().String()+"-01", seen.Get("traceparent"),
		"the function receives the invocation span as its parent: through the gateway and the agent")
	assert.Equal(t, "cold-1", seen.Get(lifecycle.HeaderRequestID))
	assert.Equal(t, true, attr(root, string(faasotel.AttrColdStart)))
	assert.Equal(t, "echo", attr(root, string(faasotel.AttrFunction)))
	assert.Equal(t, trace.SpanKindServer, root.SpanKind)

	cold := traceOf(exp.GetSpans(), root.SpanContext.TraceID())
	assert.Equal(t, []string{faasotel.SpanAdmission, faasotel.SpanColdStart, faasotel.SpanProxy, faasotel.SpanQueue}, cold.children(root))
	cs := cold.named(t, faasotel.SpanColdStart)
	assert.Equal(t, []string{faasotel.SpanFetch, faasotel.SpanInit, faasotel.SpanLoad, faasotel.SpanTake}, cold.children(cs))
	assert.Equal(t, attr(root, string(faasotel.AttrInstance)), attr(cs, string(faasotel.AttrInstance)), "the cold start of the instance that served it")
	// The steps in order: take, then load (fetch inside), then init, then
	// the proxied call after the queue.
	take, load, fetch, init := cold.named(t, faasotel.SpanTake), cold.named(t, faasotel.SpanLoad), cold.named(t, faasotel.SpanFetch), cold.named(t, faasotel.SpanInit)
	assert.False(t, load.StartTime.Before(take.EndTime))
	assert.Equal(t, load.StartTime, fetch.StartTime)
	assert.False(t, fetch.EndTime.After(load.EndTime))
	assert.False(t, init.StartTime.Before(load.EndTime))
	queue, proxy := cold.named(t, faasotel.SpanQueue), cold.named(t, faasotel.SpanProxy)
	assert.False(t, proxy.StartTime.Before(queue.EndTime))
	assert.False(t, proxy.EndTime.After(root.EndTime))
	assert.Positive(t, proxy.EndTime.Sub(proxy.StartTime))

	// 2. Warm, in-process, as a child of the caller's span.
	ctx, parent := tp.Tracer("test").Start(context.Background(), "consumer")
	iresp, err := tr.Invoke(ctx, e.dp, &faas.Request{FunctionID: "echo", Method: http.MethodGet, RequestID: "warm-1"})
	require.NoError(t, err)
	parent.End()
	require.NoError(t, json.Unmarshal(iresp.Body, &seen))
	warmRoot := waitForInvoke(t, exp, "warm-1")
	assert.Equal(t, parent.SpanContext().SpanID(), warmRoot.Parent.SpanID())
	assert.Equal(t, warmRoot.SpanContext.SpanID().String(), seen.Get("traceparent")[36:52], "Invoke passes the span on too")
	warm := traceOf(exp.GetSpans(), warmRoot.SpanContext.TraceID())
	assert.Equal(t, []string{faasotel.SpanAdmission, faasotel.SpanProxy}, warm.children(warmRoot), "a warm invocation neither queued nor cold-started")
	assert.Equal(t, false, attr(warmRoot, string(faasotel.AttrColdStart)))

	// 3. Dataplane.Invoke without the Tracer's help: still a span tree,
	// in a trace of its own.
	_, err = e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "echo", RequestID: "plain-1"})
	require.NoError(t, err)
	plainRoot := waitForInvoke(t, exp, "plain-1")
	assert.False(t, plainRoot.Parent.IsValid())
	plain := traceOf(exp.GetSpans(), plainRoot.SpanContext.TraceID())
	assert.Equal(t, []string{faasotel.SpanAdmission, faasotel.SpanProxy}, plain.children(plainRoot))
}

// TestMetricsThroughTheSDKAndOneEndpoint: the OTel metrics count known
// traffic, and the SDK's Prometheus exporter serves them on the same
// endpoint as contrib/prometheus's.
func TestMetricsThroughTheSDKAndOneEndpoint(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	reg := prom.NewRegistry()
	bridge, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithNamespace("otel"))
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithReader(bridge))
	defer func() { require.NoError(t, mp.Shutdown(context.Background())) }()
	om, err := faasotel.NewMetrics(faasotel.MetricsConfig{MeterProvider: mp})
	require.NoError(t, err)
	pm, err := faasprom.New(faasprom.Config{})
	require.NoError(t, err)
	e := newEnv(t, func(c *faas.Config) {
		c.Observer = faas.Observers(om, pm)
		c.Limits.MaxBodyBytes = 1024
	})
	reg.MustRegister(pm, faasprom.NewStatsCollector(e.dp, pm))
	registration, err := om.ObserveDataplane(e.dp)
	require.NoError(t, err)
	defer func() { require.NoError(t, registration.Unregister()) }()
	e.deploy(specFor("hello", "hello"))
	for range 4 {
		_, err := e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "hello"})
		require.NoError(t, err)
	}
	_, err = e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "hello", Body: make([]byte, 2048)})
	require.ErrorIs(t, err, lifecycle.CodeTooLarge)

	var rm metricdata.ResourceMetrics
	require.Eventually(t, func() bool {
		require.NoError(t, reader.Collect(context.Background(), &rm))
		return sumOf(rm, "faas.requests", "ok") == 4 && sumOf(rm, "faas.requests", "too_large") == 1
	}, 10*time.Second, 10*time.Millisecond)
	assert.EqualValues(t, 4, histCount(rm, "faas.request.duration"))
	assert.EqualValues(t, 1, sumOf(rm, "faas.request.starts", "cold"))
	assert.EqualValues(t, 3, sumOf(rm, "faas.request.starts", "warm"))
	assert.EqualValues(t, 6, histCount(rm, "faas.cold_start.duration"), "one cold start, six steps")
	assert.EqualValues(t, 1, gaugeOf(rm, "faas.instances", "ready"))

	// One endpoint, both libraries.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	require.NoError(t, err)
	require.Contains(t, fams, "faas_requests_total", "contrib/prometheus's")
	require.Contains(t, fams, "otel_faas_requests_total", "the OTel SDK's, through the exporter")
	require.Contains(t, fams, "otel_faas_request_duration_seconds")
}

func sumOf(rm metricdata.ResourceMetrics, name, attrValue string) float64 {
	var total float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[float64]); ok {
				for _, dp := range s.DataPoints {
					for _, kv := range dp.Attributes.ToSlice() {
						if kv.Value.AsString() == attrValue {
							total += dp.Value
						}
					}
				}
			}
		}
	}
	return total
}

func histCount(rm metricdata.ResourceMetrics, name string) uint64 {
	var n uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				for _, dp := range h.DataPoints {
					n += dp.Count
				}
			}
		}
	}
	return n
}

func gaugeOf(rm metricdata.ResourceMetrics, name, state string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name {
				for _, dp := range g.DataPoints {
					if v, ok := dp.Attributes.Value("state"); ok && v.AsString() == state {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}
