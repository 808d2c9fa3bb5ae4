package trigger

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
)

// invoker is a fake dataplane: fn answers each request; it records the
// requests and the most invocations it saw at once.
type invoker struct {
	fn func(ctx context.Context, req *faas.Request) (*faas.Response, error)

	mu        sync.Mutex
	reqs      []*faas.Request
	now, most int
}

func (v *invoker) Invoke(ctx context.Context, req *faas.Request) (*faas.Response, error) {
	v.mu.Lock()
	v.reqs = append(v.reqs, req)
	v.now++
	v.most = max(v.most, v.now)
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.now--
		v.mu.Unlock()
	}()
	return v.fn(ctx, req)
}

func (v *invoker) requests() []*faas.Request {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*faas.Request(nil), v.reqs...)
}

func ok() (*faas.Response, error) { return &faas.Response{StatusCode: 200}, nil }

func TestNewValidates(t *testing.T) {
	good := Config{Dataplane: &invoker{}, JetStream: fakeJS{}, Stream: "S", Consumer: "c", FunctionID: "f", DeadLetterSubject: "dead"}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
	}{
		{"no dataplane", func(c *Config) { c.Dataplane = nil }},
		{"no JetStream", func(c *Config) { c.JetStream = nil }},
		{"no stream", func(c *Config) { c.Stream = "" }},
		{"no consumer", func(c *Config) { c.Consumer = "" }},
		{"no dead letters", func(c *Config) { c.DeadLetterSubject = "" }},
		{"wildcard dead letters", func(c *Config) { c.DeadLetterSubject = "dead.*" }},
		{"bad function", func(c *Config) { c.FunctionID = "a b" }},
		{"negative in flight", func(c *Config) { c.MaxInFlight = -1 }},
		{"negative ack wait", func(c *Config) { c.AckWait = -time.Second }},
	} {
		c := good
		tc.edit(&c)
		_, err := New(c)
		assert.ErrorIs(t, err, ErrInvalidConfig, tc.name)
	}
	tr, err := New(good)
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxInFlight, tr.cfg.MaxInFlight)
	assert.Equal(t, DefaultMaxDeliveries, tr.cfg.MaxDeliveries)
	assert.Equal(t, DefaultAckWait, tr.cfg.AckWait)
	assert.Equal(t, "nats:S", tr.cfg.Caller)
}

// fakeJS stands in for a JetStream handle in the configuration tests,
// which never use it.
type fakeJS struct{ jetstream.JetStream }

// No more than MaxInFlight invocations at once, however many messages
// wait: the back-pressure.
func TestTriggerBoundsMessagesInFlight(t *testing.T) {
	s := inProcess(t)
	release := make(chan struct{})
	v := &invoker{fn: func(context.Context, *faas.Request) (*faas.Response, error) {
		<-release
		return ok()
	}}
	tr, err := New(Config{Dataplane: v, JetStream: s.js, Stream: "ORDERS", Consumer: "c", FunctionID: "f", DeadLetterSubject: "dead.orders", MaxInFlight: 4})
	require.NoError(t, err)
	bodies := make([]string, 60)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	s.publish(t, bodies...)
	running(t, tr)
	require.Eventually(t, func() bool { return tr.Stats().InFlight == 4 }, 10*time.Second, time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return tr.Stats().Processed == 60 }, 30*time.Second, time.Millisecond)
	v.mu.Lock()
	assert.Equal(t, 4, v.most)
	v.mu.Unlock()
	pending, ackPending := s.pending(t, "c")
	assert.Zero(t, pending)
	require.Eventually(t, func() bool { _, ap := s.pending(t, "c"); return ap == 0 }, 10*time.Second, 10*time.Millisecond, "ack pending %d", ackPending)
}

// Each outcome settles as the policy says: acks, retries (with the
// delivery count rising), dead letters with their headers.
func TestTriggerSettlesByOutcome(t *testing.T) {
	s := inProcess(t)
	v := &invoker{fn: func(ctx context.Context, req *faas.Request) (*faas.Response, error) {
		delivery := req.Header.Get(HeaderDelivery)
		switch string(req.Body) {
		case "ok":
			return ok()
		case "bad input":
			return &faas.Response{StatusCode: 400, Body: []byte("no such order")}, nil
		case "flaky":
			if delivery == "1" || delivery == "2" {
				return &faas.Response{StatusCode: 503, Header: http.Header{"Retry-After": {"0"}}}, nil
			}
			return ok()
		case "broken":
			return &faas.Response{StatusCode: 500, Body: []byte("stack trace\nline 2")}, nil
		case "refused":
			return nil, lifecycle.Errorf(lifecycle.CodeBadRequest, "invalid path")
		}
		return nil, fmt.Errorf("unexpected body %q", req.Body)
	}}
	tr, err := New(Config{Dataplane: v, JetStream: s.js, Stream: "ORDERS", Consumer: "c", FunctionID: "f",
		DeadLetterSubject: "dead.orders", MaxDeliveries: 3, Backoff: func(uint64) time.Duration { return time.Millisecond }})
	require.NoError(t, err)
	s.publish(t, "ok", "bad input", "flaky", "broken", "refused")
	running(t, tr)
	require.Eventually(t, func() bool {
		st := tr.Stats()
		return st.Processed == 3 && st.DeadLettered == 2
	}, 30*time.Second, time.Millisecond, "%+v", tr.Stats())
	st := tr.Stats()
	assert.Equal(t, uint64(4), st.Retried, "flaky twice, broken twice")
	assert.Equal(t, uint64(9), st.Received, "1 + 1 + 3 + 3 + 1")
	assert.Equal(t, uint64(4), st.Redelivered)
	assert.Zero(t, st.SettleErrors)

	// The requests: the message as body, stable IDs, the trigger's
	// headers, the publisher's own headers but not faasplane's.
	byID := map[string][]*faas.Request{}
	for _, r := range v.requests() {
		byID[r.RequestID] = append(byID[r.RequestID], r)
	}
	require.Len(t, byID, 5)
	flaky := byID[RequestID("ORDERS", 3)]
	require.Len(t, flaky, 3)
	for i, r := range flaky {
		assert.Equal(t, "flaky", string(r.Body))
		assert.Equal(t, "f", r.FunctionID)
		assert.Equal(t, "nats:ORDERS", r.Caller)
		assert.Equal(t, fmt.Sprint(i+1), r.Header.Get(HeaderDelivery))
		assert.Equal(t, "orders.new", r.Header.Get(HeaderSubject))
		assert.Equal(t, "ORDERS", r.Header.Get(HeaderStream))
		assert.Equal(t, "3", r.Header.Get(HeaderSequence))
		assert.Equal(t, "2", r.Header.Get("Order-Index"))
		assert.Empty(t, r.Header.Get("X-Faas-Caller"))
	}

	dead := s.deadLetters(t)
	require.Len(t, dead, 2)
	byBody := map[string]map[string]string{}
	for _, m := range dead {
		h := map[string]string{}
		for k := range m.Header {
			h[k] = m.Header.Get(k)
		}
		byBody[string(m.Data)] = h
	}
	assert.Equal(t, map[string]string{
		lifecycle.HeaderErrorCode: CodeFunctionError, lifecycle.HeaderErrorMessage: "function answered 500: stack trace line 2",
		lifecycle.HeaderRequestID: "ORDERS-4", HeaderSubject: "orders.new", HeaderStream: "ORDERS", HeaderSequence: "4",
		HeaderDelivery: "3", HeaderStatus: "500", "Order-Index": "3", "X-Faas-Caller": "spoofed", "Nats-Msg-Id": "ORDERS-4-dead",
	}, byBody["broken"])
	refused := byBody["refused"]
	assert.Equal(t, "bad_request", refused[lifecycle.HeaderErrorCode])
	assert.Equal(t, "1", refused[HeaderDelivery], "a request the dataplane refuses is dead at once")
	assert.True(t, strings.Contains(refused[lifecycle.HeaderErrorMessage], "invalid path"))
	require.Eventually(t, func() bool { p, ap := s.pending(t, "c"); return p == 0 && ap == 0 }, 10*time.Second, 10*time.Millisecond)
}

// A dead letter that cannot be stored is not a loss: the message is
// retried until it can be.
func TestTriggerKeepsMessagesWhoseDeadLetterFails(t *testing.T) {
	s := inProcess(t)
	v := &invoker{fn: func(context.Context, *faas.Request) (*faas.Response, error) {
		return &faas.Response{StatusCode: 500}, nil
	}}
	tr, err := New(Config{Dataplane: v, JetStream: s.js, Stream: "ORDERS", Consumer: "c", FunctionID: "f",
		DeadLetterSubject: "nowhere.orders", MaxDeliveries: 1, Backoff: func(uint64) time.Duration { return time.Millisecond }})
	require.NoError(t, err)
	s.publish(t, "x")
	stop := running(t, tr)
	require.Eventually(t, func() bool { return tr.Stats().Retried >= 3 }, 30*time.Second, time.Millisecond)
	require.ErrorIs(t, stop(), context.Canceled)
	assert.Zero(t, tr.Stats().DeadLettered)
	_, ackPending := s.pending(t, "c")
	assert.Equal(t, 1, ackPending, "still there, to be delivered again")
}

// Once its context is done, Run waits for the invocations in flight, up
// to ShutdownGrace; then it cancels them, and their messages go back for
// redelivery.
func TestTriggerShutdown(t *testing.T) {
	for _, graceOver := range []bool{false, true} {
		t.Run(fmt.Sprintf("grace over %v", graceOver), func(t *testing.T) {
			s := inProcess(t)
			clk := faastest.NewClock(time.Time{})
			started := make(chan struct{}, 100)
			release := make(chan struct{})
			v := &invoker{fn: func(ctx context.Context, req *faas.Request) (*faas.Response, error) {
				started <- struct{}{}
				select {
				case <-release:
					return ok()
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}}
			tr, err := New(Config{Dataplane: v, JetStream: s.js, Stream: "ORDERS", Consumer: "c", FunctionID: "f",
				DeadLetterSubject: "dead.orders", MaxInFlight: 2, Clock: clk})
			require.NoError(t, err)
			s.publish(t, "1", "2", "3", "4", "5", "6")
			stop := running(t, tr)
			<-started
			<-started
			stopped := make(chan error, 1)
			go func() { stopped <- stop() }()
			// Two in-progress timers, and now the grace period's.
			require.NoError(t, clk.BlockUntil(t.Context(), 3))
			select {
			case <-stopped:
				t.Fatal("Run returned with invocations in flight")
			default:
			}
			if graceOver {
				clk.Advance(DefaultShutdownGrace)
			} else {
				close(release)
			}
			require.ErrorIs(t, <-stopped, context.Canceled)
			st := tr.Stats()
			assert.Zero(t, st.InFlight)
			if graceOver {
				assert.Zero(t, st.Processed)
				assert.Equal(t, uint64(2), st.Retried, "canceled: handed back")
			} else {
				assert.Equal(t, uint64(2), st.Processed)
			}
			pending, ackPending := s.pending(t, "c")
			assert.Equal(t, 6-int(st.Processed), int(pending)+ackPending, "the others wait for the next consumer")
		})
	}
}
