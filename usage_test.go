package faas

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
)

func TestParseBilledMillis(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"1", time.Millisecond, true},
		{"250", 250 * time.Millisecond, true},
		{"007", 7 * time.Millisecond, true},
		{strconv.Itoa(MaxBilledMillis), MaxBilledMillis * time.Millisecond, true},
		{strconv.Itoa(MaxBilledMillis + 1), 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"12345678901", 0, false},
		{"abc", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseBilledMillis(tt.in)
		assert.Equal(t, tt.ok, ok, "%q", tt.in)
		assert.Equal(t, tt.want, got, "%q", tt.in)
	}
}

// FuzzParseBilledMillis: whatever an agent (or a function posing as one)
// sends, the parser returns a bounded whole number of milliseconds, and
// every integer in range round-trips.
func FuzzParseBilledMillis(f *testing.F) {
	for _, s := range []string{"0", "1", "604800000", "604800001", "-5", "1.0", "", "99999999999", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseBilledMillis(s)
		if !ok {
			require.Zero(t, d)
			return
		}
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, MaxBilledMillis*time.Millisecond)
		require.Zero(t, d%time.Millisecond)
		back, ok := parseBilledMillis(strconv.FormatInt(d.Milliseconds(), 10))
		require.True(t, ok)
		require.Equal(t, d, back)
	})
}

func TestCeilMillis(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{0, 0},
		{-time.Second, 0},
		{time.Nanosecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{time.Millisecond + time.Nanosecond, 2 * time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{time.Second, time.Second},
	} {
		assert.Equal(t, tt.want, ceilMillis(tt.in), "%v", tt.in)
	}
}

func TestUsageRecordArithmetic(t *testing.T) {
	r := UsageRecord{Billed: time.Second, MemoryBytes: 1 << 30}
	assert.EqualValues(t, 1000, r.BilledMillis())
	assert.EqualValues(t, 1024*1000, r.MiBMillis())
	assert.InDelta(t, 1.0, r.GBSeconds(), 1e-12, "1 GiB for 1 s is 1 GB-second")
	r = UsageRecord{Billed: 3 * time.Millisecond, MemoryBytes: 128 << 20}
	assert.EqualValues(t, 384, r.MiBMillis())
	assert.InDelta(t, 0.000375, r.GBSeconds(), 1e-12)
	assert.Equal(t, "agent", BilledByAgent.String())
	assert.Equal(t, "dataplane", BilledByDataplane.String())
	assert.Equal(t, "none", BilledByNone.String())
	assert.Equal(t, "BillingSource(9)", BillingSource(9).String())
}

func TestCallBilling(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sent := func(c call) call { c.sent, c.ended = t0, t0.Add(1200*time.Microsecond); return c }
	tests := []struct {
		name    string
		c       call
		trailer []string // trailers of the attempts
		err     error
		want    time.Duration
		by      BillingSource
	}{
		{"agent trailer", sent(call{}), []string{"7"}, nil, 7 * time.Millisecond, BilledByAgent},
		{"two attempts add up", sent(call{}), []string{"3", "4"}, nil, 7 * time.Millisecond, BilledByAgent},
		{"a bad trailer is ignored", sent(call{}), []string{"x", "4"}, nil, 4 * time.Millisecond, BilledByAgent},
		{"no trailer: the dataplane's measurement, rounded up", sent(call{}), nil, nil, 2 * time.Millisecond, BilledByDataplane},
		{"never sent", call{}, nil, lifecycle.Errorf(lifecycle.CodeShed, "x"), 0, BilledByNone},
		{"refused by the agent before the function", sent(call{}), nil, lifecycle.Errorf(lifecycle.CodeInstanceReassigned, "x"), 0, BilledByNone},
		{"failed after reaching it", sent(call{}), nil, lifecycle.Errorf(lifecycle.CodeInstanceFailure, "x"), 2 * time.Millisecond, BilledByDataplane},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			for _, v := range tt.trailer {
				c.bill(map[string][]string{lifecycle.HeaderBilledMillis: {v}})
			}
			c.bill(nil) // an attempt without an answer
			got, by := c.billing(tt.err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.by, by)
		})
	}
}

func TestSpecResources(t *testing.T) {
	tests := []struct {
		name          string
		memory, cpu   int64
		ok            bool
		wantMem, want int64
	}{
		{"defaults", 0, 0, true, DefaultMemoryBytes, 0},
		{"sized", 512 << 20, 1500, true, 512 << 20, 1500},
		{"smallest", MinMemoryBytes, MinMilliCPU, true, MinMemoryBytes, MinMilliCPU},
		{"largest", MaxMemoryBytes, MaxMilliCPU, true, MaxMemoryBytes, MaxMilliCPU},
		{"not whole MiB", 100<<20 + 1, 0, false, 0, 0},
		{"too small", 8 << 20, 0, false, 0, 0},
		{"too large", MaxMemoryBytes + 1<<20, 0, false, 0, 0},
		{"negative memory", -1, 0, false, 0, 0},
		{"too little CPU", 0, 5, false, 0, 0},
		{"too much CPU", 0, MaxMilliCPU + 1, false, 0, 0},
		{"negative CPU", 0, -1, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			s.MemoryBytes, s.MilliCPU = tt.memory, tt.cpu
			err := s.Validate()
			if !tt.ok {
				require.ErrorIs(t, err, ErrInvalidSpec)
				var fe *FieldError
				require.ErrorAs(t, err, &fe)
				assert.Contains(t, []string{"MemoryBytes", "MilliCPU"}, fe.Field)
				return
			}
			require.NoError(t, err)
			s = s.withDefaults()
			assert.Equal(t, tt.wantMem, s.MemoryBytes)
			lim := coldstartFunction(s, 1).Limits
			assert.Equal(t, tt.wantMem, lim.MemoryBytes, "the memory size reaches the agent")
			assert.Equal(t, tt.want, lim.MilliCPU, "the CPU share reaches the agent")
		})
	}
}

// memSink collects usage records; WriteUsage can be held on a gate and
// made to fail.
type memSink struct {
	mu      sync.Mutex
	records []UsageRecord
	batches int
	fail    error
	entered chan struct{} // when non-nil, WriteUsage signals its start
	gate    chan struct{} // when non-nil, WriteUsage waits for it
}

func (s *memSink) WriteUsage(ctx context.Context, recs []UsageRecord) error {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	if s.fail != nil {
		return s.fail
	}
	s.records = append(s.records, recs...) // copies: the slice is reused
	return nil
}

func (s *memSink) all() []UsageRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]UsageRecord(nil), s.records...)
}

func testMeter(t *testing.T, sink UsageSink, buffer, batch int) *usageMeter {
	t.Helper()
	cfg := UsageConfig{Sink: sink, Buffer: buffer, MaxBatch: batch}
	require.NoError(t, cfg.init())
	return newUsageMeter(cfg, testLogger(t))
}

func TestUsageMeterCountsOverflowAndNeverBlocks(t *testing.T) {
	sink := &memSink{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	m := testMeter(t, sink, 2, 1)
	m.start()
	rec := func(i int) { m.record(&RequestRecord{FunctionID: "f", RequestID: strconv.Itoa(i)}) }
	rec(0)
	<-sink.entered // the drain holds record 0 in the sink
	rec(1)
	rec(2) // the buffer of 2 is full now
	rec(3)
	rec(4)
	st := m.stats()
	assert.EqualValues(t, 5, st.Records)
	assert.EqualValues(t, 2, st.Dropped, "records beyond the buffer are dropped and counted")
	assert.Equal(t, 2, st.Buffered)
	close(sink.gate)
	go func() {
		for range sink.entered {
		}
	}()
	require.NoError(t, m.stop())
	close(sink.entered)
	st = m.stats()
	assert.EqualValues(t, 3, st.Written, "stop hands the buffered records to the sink")
	assert.Zero(t, st.Buffered)
	var ids []string
	for _, r := range sink.all() {
		ids = append(ids, r.RequestID)
	}
	assert.Equal(t, []string{"0", "1", "2"}, ids, "in the order the invocations finished")
}

func TestUsageMeterStopDrainsAndCountsLateRecords(t *testing.T) {
	sink := &memSink{}
	m := testMeter(t, sink, 100, 7)
	m.start()
	for i := range 50 {
		m.record(&RequestRecord{FunctionID: "f", Billed: time.Duration(i) * time.Millisecond, MemoryBytes: 1 << 20})
	}
	require.NoError(t, m.stop())
	require.NoError(t, m.stop(), "stop is idempotent")
	got := sink.all()
	require.Len(t, got, 50)
	for i, r := range got {
		assert.EqualValues(t, i, r.MiBMillis())
	}
	m.record(&RequestRecord{FunctionID: "late"})
	st := m.stats()
	assert.EqualValues(t, 51, st.Records)
	assert.EqualValues(t, 50, st.Written)
	assert.EqualValues(t, 1, st.Dropped, "a record after the stop is counted, not lost silently")
}

func TestUsageMeterCountsSinkFailures(t *testing.T) {
	sink := &memSink{fail: errors.New("billing database down")}
	m := testMeter(t, sink, 100, 10)
	m.start()
	for range 25 {
		m.record(&RequestRecord{FunctionID: "f"})
	}
	require.NoError(t, m.stop())
	st := m.stats()
	assert.EqualValues(t, 25, st.Failed)
	assert.Zero(t, st.Written)
	assert.Equal(t, 3, sink.batches, "batches of at most MaxBatch")
}

func TestUsageConfigValidation(t *testing.T) {
	for _, c := range []UsageConfig{{Buffer: -1}, {MaxBatch: -1}, {WriteTimeout: -time.Second}} {
		_, err := New(Config{Pods: faastest.NewPodProvider(faastest.PodProviderConfig{}), Code: faastest.NewCodeStore(faastest.CodeStoreConfig{}), Usage: c})
		require.ErrorIs(t, err, ErrInvalidConfig)
	}
	c := UsageConfig{}
	require.NoError(t, c.init())
	m := newUsageMeter(c, testLogger(t))
	assert.Nil(t, m, "no sink, no meter: metering costs nothing")
	assert.Equal(t, DefaultUsageBuffer, c.Buffer)
	assert.Equal(t, DefaultUsageMaxBatch, c.MaxBatch)
	assert.Equal(t, DefaultUsageWriteTimeout, c.WriteTimeout)
	assert.Equal(t, UsageStats{}, m.stats())
}

func TestColdStartLogMatchesRequestsToTheirColdStart(t *testing.T) {
	var l coldStartLog
	now := time.Unix(5000, 0)
	report := func(fn, inst string) coldstart.Report {
		return coldstart.Report{FunctionID: fn, InstanceID: inst, Breakdown: coldstart.Breakdown{Take: time.Millisecond, Total: 10 * time.Millisecond}}
	}
	got := make(chan *ColdStartRecord, 4)
	// A request that ends before its cold start's report waits for it.
	l.attach("i-1", func(r *ColdStartRecord) { got <- r })
	assert.Empty(t, got)
	l.add(report("f", "i-1"), now)
	r := <-got
	require.NotNil(t, r)
	assert.Equal(t, "i-1", r.InstanceID)
	assert.Equal(t, now.Add(-10*time.Millisecond), r.Start)
	// One that ends after gets it at once.
	l.attach("i-1", func(r *ColdStartRecord) { got <- r })
	require.NotNil(t, <-got)
	// One whose report never comes gets nil, after coldStartWait.
	l.attach("i-missing", func(r *ColdStartRecord) { got <- r })
	select {
	case r := <-got:
		require.Nil(t, r)
	case <-time.After(10 * time.Second):
		t.Fatal("a record waiting for a report that never comes was not handed over")
	}
	l.mu.Lock()
	assert.Zero(t, l.nparked)
	l.mu.Unlock()
}

func TestColdStartLogIsBounded(t *testing.T) {
	var l coldStartLog
	now := time.Unix(5000, 0)
	for i := range coldStartLogSize + 10 {
		fn := "even"
		if i%2 == 1 {
			fn = "odd"
		}
		r := coldstart.Report{FunctionID: fn, InstanceID: "i-" + strconv.Itoa(i)}
		if i == coldStartLogSize+9 {
			r.Err = errors.New("init failed")
		}
		l.add(r, now.Add(time.Duration(i)))
	}
	assert.Len(t, l.ring, coldStartLogSize)
	assert.Len(t, l.byInst, coldStartLogSize, "evicted cold starts leave the index")
	recent := l.recent("", 3)
	require.Len(t, recent, 3)
	assert.Equal(t, "i-"+strconv.Itoa(coldStartLogSize+9), recent[0].InstanceID, "newest first")
	assert.Equal(t, "init failed", recent[0].Err)
	odd := l.recent("odd", 2)
	require.Len(t, odd, 2)
	for _, r := range odd {
		assert.Equal(t, "odd", r.FunctionID)
	}
	assert.Len(t, l.recent("even", 10_000), coldStartLogSize/2)
	assert.Empty(t, l.recent("other", 5))
	// The oldest are gone: a request on such an instance waits, then
	// gets nil.
	got := make(chan *ColdStartRecord, 1)
	l.attach("i-0", func(r *ColdStartRecord) { got <- r })
	require.Nil(t, <-got)
}
