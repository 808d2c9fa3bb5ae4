package faas

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
)

// recordingObserver keeps every RequestRecord.
type recordingObserver struct {
	NopObserver
	mu   sync.Mutex
	reqs []RequestRecord
	cold []coldstart.Report
}

func (o *recordingObserver) ObserveRequest(r RequestRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reqs = append(o.reqs, r)
}

func (o *recordingObserver) ObserveColdStart(r coldstart.Report) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cold = append(o.cold, r)
}

func (o *recordingObserver) byRequestID(t *testing.T, n int) map[string]RequestRecord {
	t.Helper()
	out := map[string]RequestRecord{}
	require.Eventually(t, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, r := range o.reqs {
			out[r.RequestID] = r
		}
		return len(out) >= n
	}, 5*time.Second, time.Millisecond)
	return out
}

// usageByRequestID waits until the sink has n records and returns them.
func usageByRequestID(t *testing.T, sink *memSink, n int) map[string]UsageRecord {
	t.Helper()
	require.Eventually(t, func() bool { return len(sink.all()) >= n }, 5*time.Second, time.Millisecond)
	out := map[string]UsageRecord{}
	for _, r := range sink.all() {
		out[r.RequestID] = r
	}
	require.Len(t, out, n, "one record per invocation")
	return out
}

// billingAgents answers like fakeAgents and, for requests that ask with
// X-Test-Billed, sends that value as the X-Faas-Billed-Ms trailer, as a
// real agent does; requests with X-Test-Hold wait for hold.
func billingAgents(hold chan struct{}, holding chan string) *fakeAgents {
	agents := newFakeAgents()
	agents.handler = func(w http.ResponseWriter, r *http.Request, digest string) {
		if r.Header.Get("X-Test-Hold") != "" {
			holding <- r.Header.Get(lifecycle.HeaderRequestID)
			<-hold
		}
		billed := r.Header.Get("X-Test-Billed")
		if billed != "" {
			w.Header().Set("Trailer", lifecycle.HeaderBilledMillis)
		}
		_, _ = io.WriteString(w, "ok "+digest)
		if billed != "" {
			w.Header().Set(lifecycle.HeaderBilledMillis, billed)
		}
	}
	return agents
}

func TestUsageRecordOfEveryCall(t *testing.T) {
	sink := &memSink{}
	obs := &recordingObserver{}
	hold, holding := make(chan struct{}), make(chan string, 1)
	e := newFakeEnv(t, billingAgents(hold, holding), func(c *Config) {
		c.Usage.Sink = sink
		c.Observer = obs
	})
	ref := e.store.Add([]byte("code f"))
	ref.URI = "fake://f"
	spec := FunctionSpec{ID: "f", Runtime: "go", Code: ref, Concurrency: 4, MaxConcurrency: 1, MemoryBytes: 256 << 20}
	require.NoError(t, e.dp.Deploy(context.Background(), spec))
	gw := httptest.NewServer(e.dp)
	defer gw.Close()

	// 1. The first request, through the gateway, waits for the cold start
	// and is billed what the agent reports.
	req, err := http.NewRequest(http.MethodPost, gw.URL+"/invoke/f", nil)
	require.NoError(t, err)
	req.Header.Set(lifecycle.HeaderRequestID, "rid-cold")
	req.Header.Set(lifecycle.HeaderCaller, "tenant-a")
	req.Header.Set("X-Test-Billed", "7")
	resp, err := gw.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "7", resp.Trailer.Get(lifecycle.HeaderBilledMillis), "the trailer reaches the client too")

	// 2. Warm, in-process, from an agent that reports nothing: the
	// Dataplane's own measurement.
	_, err = e.dp.Invoke(context.Background(), &Request{FunctionID: "f", RequestID: "rid-warm", Caller: "tenant-b", Priority: loadshed.Critical})
	require.NoError(t, err)

	// 3. Over the function-wide limit of 1 while a request is held: never
	// reaches a function, nothing billed.
	done := make(chan error, 1)
	go func() {
		_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "f", RequestID: "rid-held",
			Header: http.Header{"X-Test-Hold": {"1"}, "X-Test-Billed": {"40"}}})
		done <- err
	}()
	<-holding
	_, err = e.dp.Invoke(context.Background(), &Request{FunctionID: "f", RequestID: "rid-refused"})
	require.ErrorIs(t, err, lifecycle.CodeConcurrencyLimit)
	close(hold)
	require.NoError(t, <-done)

	usage := usageByRequestID(t, sink, 4)
	cold := usage["rid-cold"]
	assert.Equal(t, UsageRecord{
		FunctionID: "f", Generation: cold.Generation, Caller: "tenant-a", RequestID: "rid-cold",
		InstanceID: cold.InstanceID, Node: cold.Node, Start: cold.Start,
		Billed: 7 * time.Millisecond, BilledBy: BilledByAgent, MemoryBytes: 256 << 20, Cold: true,
	}, cold)
	assert.NotEmpty(t, cold.InstanceID)
	assert.NotZero(t, cold.Generation)

	warm := usage["rid-warm"]
	assert.Equal(t, "tenant-b", warm.Caller)
	assert.Equal(t, BilledByDataplane, warm.BilledBy)
	assert.Positive(t, warm.Billed)
	assert.Zero(t, warm.Billed%time.Millisecond, "billed in whole milliseconds")
	assert.False(t, warm.Cold)
	assert.Equal(t, cold.InstanceID, warm.InstanceID)

	assert.Equal(t, 40*time.Millisecond, usage["rid-held"].Billed)
	refused := usage["rid-refused"]
	assert.Equal(t, lifecycle.CodeConcurrencyLimit, refused.Code)
	assert.Equal(t, BilledByNone, refused.BilledBy)
	assert.Zero(t, refused.Billed)
	assert.Empty(t, refused.InstanceID)

	var sum time.Duration
	var mib int64
	for _, r := range usage {
		sum += r.Billed
		mib += r.MiBMillis()
	}
	fs, _ := e.dp.FunctionStats("f")
	assert.Equal(t, sum, fs.Usage.Billed, "the function's statistics add up the same usage")
	assert.EqualValues(t, mib, fs.Usage.MiBMillis)
	assert.InDelta(t, float64(mib)/1024/1000, fs.Usage.GBSeconds, 1e-12)
	assert.EqualValues(t, 1, fs.Cold)
	assert.EqualValues(t, 256<<20, fs.MemoryBytes)
	// The sink has the records a moment before the meter counts them
	// written.
	require.Eventually(t, func() bool { return e.dp.Stats().Usage.Written == 4 }, 5*time.Second, time.Millisecond)
	st := e.dp.Stats().Usage
	assert.True(t, st.Enabled)
	assert.EqualValues(t, 4, st.Records)
	assert.Zero(t, st.Dropped)

	// The observer sees the same requests, the cold one with its cold
	// start and the timeline of the call.
	recs := obs.byRequestID(t, 4)
	rc := recs["rid-cold"]
	require.True(t, rc.Cold)
	require.NotNil(t, rc.ColdStart, "the cold start that served the request")
	assert.Equal(t, rc.InstanceID, rc.ColdStart.InstanceID)
	assert.Positive(t, rc.ColdStart.Breakdown.Total)
	assert.Equal(t, "tenant-a", rc.Caller)
	assert.True(t, rc.Waited)
	for _, ts := range []time.Time{rc.QueueStart, rc.QueueEnd, rc.Sent, rc.Returned} {
		require.False(t, ts.IsZero())
	}
	assert.False(t, rc.QueueStart.Before(rc.Start))
	assert.False(t, rc.QueueEnd.Before(rc.QueueStart))
	assert.False(t, rc.Sent.Before(rc.QueueEnd))
	assert.False(t, rc.Returned.Before(rc.Sent))
	rw := recs["rid-warm"]
	assert.False(t, rw.Cold)
	assert.Nil(t, rw.ColdStart)
	assert.Equal(t, loadshed.Critical, rw.Priority)
	assert.True(t, rw.QueueStart.IsZero(), "a warm request did not queue")
	assert.Equal(t, lifecycle.CodeConcurrencyLimit, recs["rid-refused"].Code)
	assert.Equal(t, 256<<20, int(recs["rid-held"].MemoryBytes))

	recent := e.dp.RecentColdStarts("f", 10)
	require.Len(t, recent, 1)
	assert.Equal(t, cold.InstanceID, recent[0].InstanceID)
	assert.Empty(t, recent[0].Err)
	assert.Empty(t, e.dp.RecentColdStarts("other", 10))
}

func TestWaitingForABusyInstanceIsNotCold(t *testing.T) {
	sink := &memSink{}
	obs := &recordingObserver{}
	hold, holding := make(chan struct{}), make(chan string, 1)
	e := newFakeEnv(t, billingAgents(hold, holding), func(c *Config) {
		c.Usage.Sink = sink
		c.Observer = obs
	})
	deployAndWarm(t, e, FunctionSpec{ID: "busy", Concurrency: 1, MinInstances: 1, MaxInstances: 1})
	done := make(chan error, 1)
	go func() {
		_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "busy", RequestID: "first", Header: http.Header{"X-Test-Hold": {"1"}}})
		done <- err
	}()
	<-holding
	go func() {
		_, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "busy", RequestID: "second"})
		done <- err
	}()
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("busy"); return fs.Queued == 1 }, 5*time.Second, time.Millisecond)
	close(hold)
	require.NoError(t, <-done)
	require.NoError(t, <-done)

	recs := obs.byRequestID(t, 2)
	second := recs["second"]
	assert.True(t, second.Waited, "it waited for the busy instance")
	assert.False(t, second.Cold, "no cold start served it")
	assert.False(t, second.QueueEnd.Before(second.QueueStart))
	assert.Equal(t, recs["first"].InstanceID, second.InstanceID)
	usage := usageByRequestID(t, sink, 2)
	assert.False(t, usage["second"].Cold)
	assert.False(t, usage["first"].Cold, "the instance was warm before it")
	fs, _ := e.dp.FunctionStats("busy")
	assert.EqualValues(t, 1, fs.Waited)
	assert.Zero(t, fs.Cold)
}
