package otel_test

import (
	"context"
	"fmt"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	faasotel "github.com/faasplane/faas/contrib/otel"
)

// ExampleTracer shows the span tree of an invocation that waited for a
// cold start. In a deployment the Tracer is faas.Config.Observer and the
// gateway is served through tr.Handler(dp); here a record is handed to it
// directly.
func ExampleTracer() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr, err := faasotel.NewTracer(faasotel.TracerConfig{TracerProvider: tp})
	if err != nil {
		panic(err)
	}
	t0, ms := time.Now(), time.Millisecond
	tr.ObserveRequest(faas.RequestRecord{
		FunctionID: "resize", RequestID: "r-1", Start: t0, Latency: 60 * ms, Waited: true, Cold: true,
		QueueStart: t0, QueueEnd: t0.Add(50 * ms), Sent: t0.Add(50 * ms), Returned: t0.Add(59 * ms),
		ColdStart: &faas.ColdStartRecord{Start: t0, End: t0.Add(50 * ms),
			Breakdown: coldstart.Breakdown{Take: ms, Fetch: 10 * ms, Load: 30 * ms, Init: 15 * ms, Total: 50 * ms}},
	})
	for _, s := range exp.GetSpans() {
		fmt.Println(s.Name)
	}
	// Output:
	// faas.admission
	// faas.queue
	// faas.coldstart
	// faas.coldstart.take
	// faas.coldstart.fetch
	// faas.coldstart.load
	// faas.coldstart.init
	// faas.proxy
	// faas.invoke
}
