package faas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// Metering: every finished invocation of a deployed function yields a
// UsageRecord (who called what, when, for how long at which memory size),
// which reaches the embedder's UsageSink without blocking the request
// path: recordCall puts it into a bounded buffer that one goroutine drains
// in batches. A full buffer drops the record and counts it
// (Stats.Usage.Dropped), with a warning in the log; nothing is lost
// silently. The billed duration is the agent's own measurement (the
// X-Faas-Billed-Ms trailer of the response, lifecycle.HeaderBilledMillis),
// so that the records add up to what the agents measured; an agent that
// sends none is billed the Dataplane's measurement of the proxied call.

// BillingSource says who measured a usage record's billed duration.
type BillingSource uint8

const (
	// BilledByNone: the request never reached a function; nothing is
	// billed.
	BilledByNone BillingSource = iota
	// BilledByAgent: the agents' X-Faas-Billed-Ms trailers (the time they
	// proxied the request to the function), summed over the attempts.
	BilledByAgent
	// BilledByDataplane: no agent reported a billed duration; the
	// Dataplane's own measurement of the proxied call, from sending the
	// request to the end of its answer, rounded up to whole milliseconds.
	BilledByDataplane
)

var billingSourceNames = [...]string{"none", "agent", "dataplane"}

// String returns "none", "agent" or "dataplane".
func (s BillingSource) String() string {
	if int(s) < len(billingSourceNames) {
		return billingSourceNames[s]
	}
	return fmt.Sprintf("BillingSource(%d)", uint8(s))
}

// UsageRecord is the metering record of one finished invocation.
type UsageRecord struct {
	FunctionID string
	// Generation is the function's deployment the request was admitted
	// to.
	Generation uint64
	// Caller is the caller the request was admitted as (X-Faas-Caller,
	// else the function ID); RequestID its X-Faas-Request-Id.
	Caller, RequestID string
	// InstanceID and Node name the instance of the request's last attempt
	// (empty when it was not sent).
	InstanceID, Node string
	// Start is when the request arrived, on the Dataplane's clock.
	Start time.Time
	// Billed is the billed duration, whole milliseconds; BilledBy says who
	// measured it.
	Billed   time.Duration
	BilledBy BillingSource
	// MemoryBytes is the memory size of the function's instances
	// (FunctionSpec.MemoryBytes), a multiple of 1 MiB.
	MemoryBytes int64
	// Cold reports that the request waited for the cold start of the
	// instance that served it.
	Cold bool
	// Code is the error code of a failed invocation, empty when the
	// function answered (whatever its status); Canceled reports that the
	// caller went away first.
	Code     lifecycle.ErrorCode
	Canceled bool
}

// BilledMillis returns the billed duration in milliseconds.
func (r UsageRecord) BilledMillis() int64 { return r.Billed.Milliseconds() }

// MiBMillis returns the billed duration times the memory size in
// MiB-milliseconds: the exact integer that GB-seconds approximate.
func (r UsageRecord) MiBMillis() int64 { return r.Billed.Milliseconds() * (r.MemoryBytes >> 20) }

// GBSeconds returns the record's GB-seconds: memory in GiB (1024 MiB, as
// the cloud providers count) times billed seconds.
func (r UsageRecord) GBSeconds() float64 { return float64(r.MiBMillis()) / (1024 * 1000) }

// UsageSink receives usage records, in batches, from one goroutine of the
// Dataplane, in the order the invocations finished. An error counts the
// batch as failed (Stats.Usage.Failed) and logs it; the sink owns any
// retrying. It must not keep records after it returns: the slice is
// reused.
type UsageSink interface {
	WriteUsage(ctx context.Context, records []UsageRecord) error
}

// UsageSinkFunc adapts a function to [UsageSink].
type UsageSinkFunc func(ctx context.Context, records []UsageRecord) error

// WriteUsage calls f(ctx, records).
func (f UsageSinkFunc) WriteUsage(ctx context.Context, records []UsageRecord) error {
	return f(ctx, records)
}

// UsageConfig configures metering ([Config.Usage]).
type UsageConfig struct {
	// Sink receives the usage records. Default nil: no records are made.
	Sink UsageSink
	// Buffer bounds the records waiting for the sink; beyond it they are
	// dropped and counted. Default 8192.
	Buffer int
	// MaxBatch bounds the records of one WriteUsage call. Default 256.
	MaxBatch int
	// WriteTimeout bounds one WriteUsage call. Default 10 s.
	WriteTimeout time.Duration
}

// Defaults of UsageConfig.
const (
	DefaultUsageBuffer       = 8192
	DefaultUsageMaxBatch     = 256
	DefaultUsageWriteTimeout = 10 * time.Second
)

// init validates c and applies the defaults.
func (c *UsageConfig) init() error {
	if c.Buffer < 0 || c.MaxBatch < 0 || c.WriteTimeout < 0 {
		return errors.New("buffer, batch and write timeout (Buffer, MaxBatch, WriteTimeout) must not be negative")
	}
	if c.Buffer == 0 {
		c.Buffer = DefaultUsageBuffer
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultUsageMaxBatch
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultUsageWriteTimeout
	}
	return nil
}

// UsageStats describes the usage records' way to their sink.
type UsageStats struct {
	// Enabled reports that a sink is configured.
	Enabled bool
	// Records counts the records made; Written those the sink took,
	// Failed those of batches it refused, Dropped those lost to a full
	// buffer or made after the Dataplane stopped. Buffered is how many
	// wait now.
	Records, Written, Failed, Dropped uint64
	Buffered                          int
}

// FunctionUsage sums a function's metered usage.
type FunctionUsage struct {
	// Billed is the sum of the billed durations.
	Billed time.Duration
	// MiBMillis is the sum of billed milliseconds times memory MiB, and
	// GBSeconds the same in GB-seconds.
	MiBMillis uint64
	GBSeconds float64
}

func usageOf(billedMillis, mibMillis uint64) FunctionUsage {
	return FunctionUsage{
		Billed:    time.Duration(billedMillis) * time.Millisecond,
		MiBMillis: mibMillis, GBSeconds: float64(mibMillis) / (1024 * 1000),
	}
}

// bill adds the billed duration an agent reported in trailer (the
// response's trailers, read after its body) to the call's.
func (c *call) bill(trailer http.Header) {
	if d, ok := parseBilledMillis(trailer.Get(lifecycle.HeaderBilledMillis)); ok {
		c.billed += d
		c.metered = true
	}
}

// billing returns the call's billed duration and who measured it; err is
// the call's result.
func (c *call) billing(err error) (time.Duration, BillingSource) {
	switch {
	case c.metered:
		return c.billed, BilledByAgent
	case c.sent.IsZero() || c.ended.IsZero() || !router.OutcomeOf(err).Reached():
		return 0, BilledByNone
	}
	return ceilMillis(c.ended.Sub(c.sent)), BilledByDataplane
}

// ceilMillis rounds d up to whole milliseconds.
func ceilMillis(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// MaxBilledMillis bounds a billed duration an agent may report: a week,
// beyond any request timeout.
const MaxBilledMillis = 7 * 24 * 3600 * 1000

// parseBilledMillis parses a X-Faas-Billed-Ms value: a decimal integer of
// milliseconds, at most MaxBilledMillis, without sign or spaces.
func parseBilledMillis(s string) (time.Duration, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > MaxBilledMillis {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// The meter's states.
const (
	meterNew = iota
	meterRunning
	meterStopped
)

// usageMeter carries usage records to the sink: a bounded buffer and the
// goroutine that drains it.
type usageMeter struct {
	sink     UsageSink
	maxBatch int
	timeout  time.Duration
	log      *slog.Logger
	ch       chan UsageRecord

	// mu orders the sends into ch against the stop: record holds it
	// shared while it sends, the stop takes it to leave the running
	// state, after which no record enters ch and the final drain misses
	// none.
	mu    sync.RWMutex
	state int
	quit  chan struct{} // closed by stop
	done  chan struct{} // closed when the drain has ended

	records, written, failed, dropped atomic.Uint64
	lastWarn                          atomic.Int64 // unix ns of the last drop warning
}

// newUsageMeter returns the meter of c, nil without a sink (metering then
// costs nothing).
func newUsageMeter(c UsageConfig, log *slog.Logger) *usageMeter {
	if c.Sink == nil {
		return nil
	}
	return &usageMeter{
		sink: c.Sink, maxBatch: c.MaxBatch, timeout: c.WriteTimeout, log: log,
		ch: make(chan UsageRecord, c.Buffer), quit: make(chan struct{}), done: make(chan struct{}),
	}
}

// start starts the drain; Dataplane.Start calls it. A nil meter (no sink)
// does nothing.
func (m *usageMeter) start() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == meterNew {
		m.state = meterRunning
		go m.run(m.quit)
	}
}

// stop stops taking records, hands the buffered ones to the sink (each
// batch within WriteTimeout) and returns when the drain has ended; records
// made later are dropped and counted. Shutdown calls it once the requests
// have ended. It is idempotent.
func (m *usageMeter) stop() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	prev := m.state
	m.state = meterStopped
	if prev == meterRunning {
		close(m.quit)
	}
	m.mu.Unlock()
	if prev != meterNew {
		<-m.done
	}
	return nil
}

// record meters the finished request rr. It never blocks.
func (m *usageMeter) record(rr *RequestRecord) {
	if m == nil {
		return
	}
	u := UsageRecord{
		FunctionID: rr.FunctionID, Generation: rr.Generation, Caller: rr.Caller, RequestID: rr.RequestID,
		InstanceID: rr.InstanceID, Node: rr.Node, Start: rr.Start,
		Billed: rr.Billed, BilledBy: rr.BilledBy, MemoryBytes: rr.MemoryBytes,
		Cold: rr.Cold, Code: rr.Code, Canceled: rr.Canceled,
	}
	m.records.Add(1)
	m.mu.RLock()
	defer m.mu.RUnlock()
	switch m.state {
	case meterRunning:
		select {
		case m.ch <- u:
		default:
			m.drop("the buffer is full")
		}
	case meterStopped:
		m.drop("the dataplane has stopped")
	default:
		m.drop("the dataplane has not started")
	}
}

// drop counts a lost record and warns, at most once a second.
func (m *usageMeter) drop(why string) {
	n := m.dropped.Add(1)
	now := time.Now().UnixNano()
	if last := m.lastWarn.Load(); now-last >= int64(time.Second) && m.lastWarn.CompareAndSwap(last, now) {
		m.log.Warn("usage records dropped", "reason", why, "dropped_total", n)
	}
}

// run drains the buffer into the sink until stop is closed, then hands
// over what is left.
func (m *usageMeter) run(stop <-chan struct{}) {
	defer close(m.done)
	batch := make([]UsageRecord, 0, m.maxBatch)
	for {
		select {
		case r := <-m.ch:
			m.write(m.fill(append(batch[:0], r)))
		case <-stop:
			m.mu.Lock()
			m.state = meterStopped
			m.mu.Unlock()
			for {
				b := m.fill(batch[:0])
				if len(b) == 0 {
					return
				}
				m.write(b)
			}
		}
	}
}

// fill adds buffered records to b, up to maxBatch, without waiting.
func (m *usageMeter) fill(b []UsageRecord) []UsageRecord {
	for len(b) < m.maxBatch {
		select {
		case r := <-m.ch:
			b = append(b, r)
		default:
			return b
		}
	}
	return b
}

func (m *usageMeter) write(b []UsageRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	err := m.sink.WriteUsage(ctx, b)
	cancel()
	if err != nil {
		m.failed.Add(uint64(len(b)))
		m.log.Warn("usage sink failed", "records", len(b), "err", err)
		return
	}
	m.written.Add(uint64(len(b)))
}

func (m *usageMeter) stats() UsageStats {
	if m == nil {
		return UsageStats{}
	}
	return UsageStats{
		Enabled: true, Records: m.records.Load(), Written: m.written.Load(),
		Failed: m.failed.Load(), Dropped: m.dropped.Load(), Buffered: len(m.ch),
	}
}
