package trigger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
)

// Headers the trigger adds: to the function's request, the first four;
// to a dead-lettered message, all of them and lifecycle's
// X-Faas-Error-Code, X-Faas-Error-Message and X-Faas-Request-Id.
const (
	// HeaderSubject is the subject the message was published on.
	HeaderSubject = "X-Faas-Trigger-Subject"
	// HeaderStream and HeaderSequence are the message's stream and stream
	// sequence number: its identity, the same on every delivery.
	HeaderStream   = "X-Faas-Trigger-Stream"
	HeaderSequence = "X-Faas-Trigger-Sequence"
	// HeaderDelivery counts the deliveries of the message, this one
	// included: more than 1 means it may have been processed before.
	HeaderDelivery = "X-Faas-Trigger-Delivery"
	// HeaderStatus is the function's HTTP status, on a message
	// dead-lettered because of the function's answer.
	HeaderStatus = "X-Faas-Trigger-Status"
)

// Defaults of Config.
const (
	DefaultMaxInFlight   = 32
	DefaultMaxDeliveries = 5
	DefaultAckWait       = 30 * time.Second
	DefaultMaxRetryDelay = time.Minute
	DefaultShutdownGrace = 5 * time.Second
)

// Invoker runs an invocation: *faas.Dataplane.
type Invoker interface {
	Invoke(ctx context.Context, req *faas.Request) (*faas.Response, error)
}

// Config configures a [Trigger].
type Config struct {
	// Dataplane runs the invocations. Required.
	Dataplane Invoker
	// JetStream reaches the stream; the caller owns its connection.
	// Required.
	JetStream jetstream.JetStream
	// Stream is the stream whose messages trigger the function. Required.
	Stream string
	// Consumer names the durable pull consumer the trigger creates (or
	// updates) on Stream and consumes; processes that share the name
	// share the messages. Required.
	Consumer string
	// FilterSubjects restricts the consumer to these subjects of the
	// stream (none: every subject).
	FilterSubjects []string
	// FunctionID is the function each message invokes, with the message
	// as the body. Required.
	FunctionID string
	// MaxInFlight bounds the messages taken and not yet settled (acked,
	// retried or dead-lettered): the back-pressure that keeps a
	// trigger from flooding its function with requests the dataplane
	// would shed. Default 32.
	MaxInFlight int
	// MaxDeliveries is the number of deliveries after which a message that
	// still fails goes to DeadLetterSubject. Default 5.
	MaxDeliveries int
	// AckWait is how long JetStream waits for an answer before it
	// delivers a message again; while an invocation runs, the trigger
	// tells it every AckWait/2 that the message is in progress. Default
	// 30 s.
	AckWait time.Duration
	// DeadLetterSubject receives, through JetStream (a stream must
	// capture it, so that a dead letter is stored before the message is
	// terminated), the messages that failed for good, with the error's
	// code, message and the request ID as headers. Required.
	DeadLetterSubject string
	// Policy decides from an invocation's outcome whether the message is
	// acknowledged, retried or dead-lettered. Default DefaultPolicy.
	Policy Policy
	// Backoff is the delay before the next delivery of a message whose
	// delivery n failed without a Retry-After. Default DefaultBackoff.
	Backoff func(n uint64) time.Duration
	// MaxRetryDelay bounds the delay of a retry, Retry-After included.
	// Default 1 min.
	MaxRetryDelay time.Duration
	// Caller names the trigger for the dataplane's fair shedding.
	// Default "nats:" + Stream.
	Caller string
	// Priority is the invocations' shedding class.
	Priority loadshed.Priority
	// Idempotent lets the dataplane retry an invocation on another
	// instance after it reached a function that failed. At-least-once
	// delivery already asks the function to tolerate repeats.
	Idempotent bool
	// ShutdownGrace bounds how long Run waits, once its context is done,
	// for the invocations in flight; then they are canceled and their
	// messages handed back for redelivery. Default 5 s.
	ShutdownGrace time.Duration
	// Clock times the in-progress notices and the grace period. Default:
	// the system clock.
	Clock clock.Clock
	// Logger receives dead letters and settlement failures at warn level.
	// Default: discard.
	Logger *slog.Logger
}

// Trigger consumes a JetStream stream and invokes a function for each
// message through the dataplane's in-process path, with at-least-once
// semantics: a message is acknowledged only after the function answered,
// so a crash of the trigger, the dataplane or the function at any point
// leads to a redelivery, never to a loss. Start it with [Trigger.Run].
type Trigger struct {
	cfg Config
	log *slog.Logger

	received, processed, retried, deadLettered, redelivered, settleErrors atomic.Uint64
	inFlight                                                              atomic.Int64
}

// Stats counts what a trigger did.
type Stats struct {
	// Received counts the deliveries taken; Redelivered those that were
	// not a message's first.
	Received, Redelivered uint64
	// Processed counts the messages acknowledged after the function
	// answered; Retried the deliveries handed back for a later one;
	// DeadLettered the messages sent to the dead-letter subject.
	Processed, Retried, DeadLettered uint64
	// SettleErrors counts acks, naks and dead letters that failed (the
	// message is then delivered again after AckWait).
	SettleErrors uint64
	// InFlight is the number of messages taken and not yet settled.
	InFlight int
}

// ErrInvalidConfig is wrapped by the configuration errors of New.
var ErrInvalidConfig = errors.New("trigger: invalid config")

// New validates cfg and returns a trigger; it starts nothing.
func New(cfg Config) (*Trigger, error) {
	bad := func(format string, args ...any) (*Trigger, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Dataplane == nil || cfg.JetStream == nil:
		return bad("Dataplane and JetStream are required")
	case cfg.Stream == "" || cfg.Consumer == "" || cfg.DeadLetterSubject == "":
		return bad("Stream, Consumer and DeadLetterSubject are required")
	case strings.ContainsAny(cfg.DeadLetterSubject, "*> \t\r\n"):
		return bad("DeadLetterSubject %q must be a literal subject", cfg.DeadLetterSubject)
	case lifecycle.ValidFunctionID(cfg.FunctionID) != nil:
		return bad("FunctionID: %v", lifecycle.ValidFunctionID(cfg.FunctionID))
	case cfg.MaxInFlight < 0 || cfg.MaxDeliveries < 0 || cfg.AckWait < 0 || cfg.MaxRetryDelay < 0 || cfg.ShutdownGrace < 0:
		return bad("counts and durations must not be negative")
	}
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight)
	cfg.MaxDeliveries = cmp.Or(cfg.MaxDeliveries, DefaultMaxDeliveries)
	cfg.AckWait = cmp.Or(cfg.AckWait, DefaultAckWait)
	cfg.MaxRetryDelay = cmp.Or(cfg.MaxRetryDelay, DefaultMaxRetryDelay)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, DefaultShutdownGrace)
	cfg.Caller = cmp.Or(cfg.Caller, "nats:"+cfg.Stream)
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	cfg.Clock = clock.Or(cfg.Clock)
	t := &Trigger{cfg: cfg, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("stream", cfg.Stream, "consumer", cfg.Consumer, "function", cfg.FunctionID)
	return t, nil
}

// Stats returns the trigger's counters.
func (t *Trigger) Stats() Stats {
	return Stats{
		Received: t.received.Load(), Redelivered: t.redelivered.Load(),
		Processed: t.processed.Load(), Retried: t.retried.Load(), DeadLettered: t.deadLettered.Load(),
		SettleErrors: t.settleErrors.Load(), InFlight: int(t.inFlight.Load()),
	}
}

// RequestID returns the request ID of the invocations of message seq of
// stream: the same on every delivery, so that a function can recognize a
// repeat.
func RequestID(stream string, seq uint64) string {
	return stream + "-" + strconv.FormatUint(seq, 10)
}

// Run creates or updates the durable consumer and consumes it until ctx is
// done: it takes a message only when fewer than MaxInFlight are in
// flight, invokes the function, and settles the message by the outcome.
// Once ctx is done it stops taking messages, hands back those taken but
// not started, waits up to ShutdownGrace for the invocations in flight,
// and returns ctx.Err(). It returns early with an error when the consumer
// cannot be created or is deleted, or the connection closes.
func (t *Trigger) Run(ctx context.Context) error {
	cc := jetstream.ConsumerConfig{
		Durable:        t.cfg.Consumer,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        t.cfg.AckWait,
		MaxDeliver:     -1, // the trigger dead-letters, with the reason
		MaxAckPending:  -1, // bounded by each trigger's MaxInFlight
		FilterSubjects: t.cfg.FilterSubjects,
	}
	cons, err := t.cfg.JetStream.CreateOrUpdateConsumer(ctx, t.cfg.Stream, cc)
	if err != nil {
		return fmt.Errorf("trigger: consumer %s on stream %s: %w", t.cfg.Consumer, t.cfg.Stream, err)
	}
	// The iterator buffers no more than one batch of MaxInFlight, which
	// it pulls as the batch drains.
	iter, err := cons.Messages(jetstream.PullMaxMessages(t.cfg.MaxInFlight))
	if err != nil {
		return fmt.Errorf("trigger: consuming %s: %w", t.cfg.Consumer, err)
	}

	// Invocations outlive ctx by up to ShutdownGrace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	slots := make(chan struct{}, t.cfg.MaxInFlight)
	err = t.consume(ctx, iter, slots, func(m jetstream.Msg) {
		wg.Go(func() {
			defer func() { <-slots }()
			t.handle(work, m, func() bool { return ctx.Err() != nil })
		})
	})
	// Hand back what was buffered: redelivered at once, elsewhere.
	iter.Drain()
	for {
		m, err := iter.Next()
		if err != nil {
			break
		}
		t.received.Add(1)
		t.settle(m, "nak", m.Nak())
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	grace := t.cfg.Clock.NewTimer(t.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C():
		cancelWork()
		<-done
	}
	return err
}

// consume takes messages while a slot is free, until ctx is done or the
// iterator fails for good.
func (t *Trigger) consume(ctx context.Context, iter jetstream.MessagesContext, slots chan struct{}, start func(jetstream.Msg)) error {
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		m, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("trigger: consuming %s: %w", t.cfg.Consumer, err)
			}
			t.log.Warn("trigger: receiving failed; going on", "err", err)
			continue
		}
		start(m)
	}
}

// handle invokes the function for one delivery and settles it. A delivery
// that fails while the trigger stops (stopping reports it) is handed back
// at once and never dead-lettered: the failure is the shutdown's, most
// likely the dataplane's own, not the message's.
func (t *Trigger) handle(ctx context.Context, m jetstream.Msg, stopping func() bool) {
	t.received.Add(1)
	t.inFlight.Add(1)
	defer t.inFlight.Add(-1)
	md, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to settle it with.
		t.log.Warn("trigger: message without JetStream metadata dropped", "subject", m.Subject(), "err", err)
		t.settleErrors.Add(1)
		return
	}
	if md.NumDelivered > 1 {
		t.redelivered.Add(1)
	}
	rid := RequestID(md.Stream, md.Sequence.Stream)
	if md.NumDelivered > uint64(t.cfg.MaxDeliveries) {
		// Delivered again after its last allowed attempt ended without a
		// verdict (a crash, a lost nak): its last error is unknown.
		t.deadLetter(ctx, m, md, rid, nil, lifecycle.Errorf(lifecycle.CodeInternal,
			"delivered %d times, more than %d, without an answer", md.NumDelivered, t.cfg.MaxDeliveries))
		return
	}
	stop := t.keepInProgress(m)
	resp, err := t.cfg.Dataplane.Invoke(ctx, t.request(m, md, rid))
	stop()
	action := t.cfg.Policy(resp, err)
	if action != Ack && stopping() {
		if t.settle(m, "nak", m.Nak()) {
			t.retried.Add(1)
		}
		return
	}
	if action == Retry && md.NumDelivered >= uint64(t.cfg.MaxDeliveries) {
		action = DeadLetter
	}
	switch action {
	case Ack:
		if t.settle(m, "ack", m.Ack()) {
			t.processed.Add(1)
		}
	case DeadLetter:
		t.deadLetter(ctx, m, md, rid, resp, err)
	default:
		delay := retryDelay(resp, err, md.NumDelivered, t.cfg.Backoff, t.cfg.Clock.Now(), t.cfg.MaxRetryDelay)
		if t.settle(m, "nak", m.NakWithDelay(delay)) {
			t.retried.Add(1)
		}
	}
}

// request builds the invocation of one delivery: the message as the body,
// its headers but the server's (Nats-*) and faasplane's (X-Faas-*), and
// the trigger's headers.
func (t *Trigger) request(m jetstream.Msg, md *jetstream.MsgMetadata, rid string) *faas.Request {
	h := make(http.Header, len(m.Headers())+4)
	for k, vs := range m.Headers() {
		ck := http.CanonicalHeaderKey(k)
		if strings.HasPrefix(ck, "Nats-") || strings.HasPrefix(ck, "X-Faas-") {
			continue
		}
		h[ck] = vs
	}
	h.Set(HeaderSubject, m.Subject())
	h.Set(HeaderStream, md.Stream)
	h.Set(HeaderSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	h.Set(HeaderDelivery, strconv.FormatUint(md.NumDelivered, 10))
	return &faas.Request{
		FunctionID: t.cfg.FunctionID, Body: m.Data(), Header: h, RequestID: rid,
		Caller: t.cfg.Caller, Priority: t.cfg.Priority, Idempotent: t.cfg.Idempotent,
	}
}

// keepInProgress tells JetStream every AckWait/2 that m is being worked
// on, until the returned function is called.
func (t *Trigger) keepInProgress(m jetstream.Msg) (stop func()) {
	every := t.cfg.AckWait / 2
	var mu sync.Mutex
	stopped := false
	var timer clock.Timer
	mu.Lock() // the function below may run before timer is set
	timer = t.cfg.Clock.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = m.InProgress()
		timer.Reset(every)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// deadLetter publishes m to the dead-letter subject and terminates it; if
// the publication fails, m is retried instead, so that nothing is lost.
func (t *Trigger) deadLetter(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, rid string, resp *faas.Response, err error) {
	code, msg := errorCode(resp, err)
	dl := nats.NewMsg(t.cfg.DeadLetterSubject)
	dl.Data = m.Data()
	for k, vs := range m.Headers() {
		if !strings.HasPrefix(http.CanonicalHeaderKey(k), "Nats-") {
			dl.Header[k] = vs
		}
	}
	dl.Header.Set(lifecycle.HeaderErrorCode, code)
	dl.Header.Set(lifecycle.HeaderErrorMessage, msg)
	dl.Header.Set(lifecycle.HeaderRequestID, rid)
	dl.Header.Set(HeaderSubject, m.Subject())
	dl.Header.Set(HeaderStream, md.Stream)
	dl.Header.Set(HeaderSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDelivery, strconv.FormatUint(md.NumDelivered, 10))
	if err == nil && resp != nil {
		dl.Header.Set(HeaderStatus, strconv.Itoa(resp.StatusCode))
	}
	// The dead letter's ID deduplicates it in its stream if a crash makes
	// the trigger send it twice.
	dl.Header.Set(jetstream.MsgIDHeader, rid+"-dead")
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, perr := t.cfg.JetStream.PublishMsg(pctx, dl); perr != nil {
		t.log.Warn("trigger: dead-lettering failed; retrying the message", "request_id", rid, "err", perr)
		if t.settle(m, "nak", m.NakWithDelay(t.cfg.Backoff(md.NumDelivered))) {
			t.retried.Add(1)
		}
		return
	}
	t.log.Warn("trigger: message dead-lettered", "request_id", rid, "code", code, "message", msg, "deliveries", md.NumDelivered)
	if t.settle(m, "term", m.TermWithReason("dead-lettered: "+code)) {
		t.deadLettered.Add(1)
	}
}

// settle records the result of an ack, nak or term.
func (t *Trigger) settle(m jetstream.Msg, op string, err error) bool {
	if err != nil {
		t.settleErrors.Add(1)
		t.log.Warn("trigger: settling a message failed; JetStream will deliver it again", "op", op, "subject", m.Subject(), "err", err)
		return false
	}
	return true
}
