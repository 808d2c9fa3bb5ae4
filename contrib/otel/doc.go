// Package otel traces a faasplane Dataplane's invocations and exports its
// metrics with OpenTelemetry.
//
// [Tracer] makes a span per invocation, "faas.invoke", with children for
// the steps the request went through: "faas.admission" (the shedder, the
// function-wide limit and getting a slot), "faas.queue" (the wait for
// capacity, when there was one), "faas.coldstart" (the cold start of the
// instance that served it, when it waited for one, with its own children
// "faas.coldstart.take", "faas.coldstart.fetch", "faas.coldstart.load" and
// "faas.coldstart.init") and "faas.proxy" (the call to the instance's
// agent). The steps' times come from the faas.RequestRecord that the
// Dataplane hands its observer when the invocation ends, so tracing adds no
// work to the request path beyond one span start. To continue the caller's
// trace and pass it on to the function, wrap the gateway with
// [Tracer.Handler] (and call [Tracer.Invoke] instead of Dataplane.Invoke):
// it extracts the W3C traceparent of the incoming request, starts the
// invocation's span as its child, and replaces the traceparent that the
// gateway copies to the agent, and the agent to the function, with the
// invocation span's, so that the function's own spans are its children.
// Invocations without it (Dataplane.Invoke called directly) still get their
// span tree, as a trace of their own.
//
// [Metrics] is the alternative to contrib/prometheus over the OTel metrics
// SDK: the same histograms and counters, as OTel instruments, and the
// Dataplane's statistics as observable instruments read at collection
// time. With the SDK's Prometheus exporter (go.opentelemetry.io/otel/
// exporters/prometheus) registered in a client_golang registry, one
// /metrics endpoint serves these beside contrib/prometheus's.
package otel
