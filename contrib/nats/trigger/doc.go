// Package trigger is a message-queue trigger on NATS JetStream: it
// consumes a stream and invokes a function for each message through the
// dataplane's in-process path (faas.Dataplane.Invoke), bypassing the HTTP
// gateway, as ByteFaaS's MQ triggers do. The message is the request's
// body; its headers, subject, stream sequence and delivery count come
// along as headers (HeaderSubject, HeaderSequence, HeaderDelivery), and
// its request ID, RequestID(stream, sequence), is the same on every
// delivery, so that a function can recognize a repeat.
//
// Delivery is at least once. A [Trigger] acknowledges a message only after
// the function answered — with a 2xx, or with an error its [Policy] says
// not to retry — so a crash of the trigger's process, of the dataplane or
// of the function at any moment ends in a redelivery (after
// Config.AckWait), never in a loss; while an invocation runs, the trigger
// tells JetStream every AckWait/2 that it is in progress, so a slow
// function is not delivered twice. A retry is a NAK with a delay that
// honours the dataplane's Retry-After when it shed the request, and the
// function's on a 429 or 503, and backs off otherwise ([DefaultBackoff]).
// After Config.MaxDeliveries deliveries a message that still fails is
// published, through JetStream, to Config.DeadLetterSubject with
// X-Faas-Error-Code, X-Faas-Error-Message and X-Faas-Request-Id headers,
// and only then terminated, so a dead letter is stored before its message
// is dropped; if it cannot be published, the message is retried.
//
// Back-pressure: a trigger takes a message only while fewer than
// Config.MaxInFlight are in flight (it pulls no more than that from the
// server ahead), so a burst in the stream becomes a bounded stream of
// invocations, not a flood of requests the dataplane would shed. Several
// processes may consume the same durable consumer (Config.Consumer), each
// with its own bound; JetStream spreads the messages among them.
package trigger
