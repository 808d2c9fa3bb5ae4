package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/admin"
	faasprom "github.com/faasplane/faas/contrib/prometheus"
	"github.com/faasplane/faas/lifecycle"
)

// scrape fetches url in the text format and parses it with expfmt.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// scrapeProto fetches url in the protobuf format, which carries the
// native histograms, and decodes it with expfmt.
func scrapeProto(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	fams := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		fams[mf.GetName()] = &mf
	}
	require.NotEmpty(t, fams)
	return fams
}

// sample finds the metric of family name with exactly labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	mf := fams[name]
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				match = false
				break
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// value is a counter's or gauge's value, or a histogram's sample count;
// -1 when the series is missing.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := sample(fams, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

type l = map[string]string

// TestMetricsOfKnownTraffic: a real Dataplane with real agents serves known
// traffic; /metrics, fetched over HTTP and parsed with expfmt, counts it
// exactly.
func TestMetricsOfKnownTraffic(t *testing.T) {
	m, err := faasprom.New(faasprom.Config{MaxFunctions: 2})
	require.NoError(t, err)
	var usage sync.Mutex
	var records []faas.UsageRecord
	e := newEnv(t, func(c *faas.Config) {
		c.Observer = m
		c.Usage.Sink = faas.UsageSinkFunc(func(_ context.Context, rs []faas.UsageRecord) error {
			usage.Lock()
			defer usage.Unlock()
			records = append(records, rs...)
			return nil
		})
	})
	agents, err := faasprom.NewAgentCollector(e.dp, m, faasprom.AgentConfig{})
	require.NoError(t, err)
	reg := prom.NewRegistry()
	reg.MustRegister(m, faasprom.NewStatsCollector(e.dp, m), agents)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	hello := specFor("hello", "hello")
	hello.MemoryBytes = 256 << 20
	e.deploy(hello)
	sleepy := specFor("sleepy", "sleep")
	sleepy.MaxConcurrency = 1
	e.deploy(sleepy)
	e.deploy(specFor("third", "hello"))

	// hello: 5 answered (the first waited for a cold start), 1 refused
	// before admission (a bad priority).
	for range 5 {
		status, body := e.do(http.MethodPost, "/invoke/hello", nil)
		require.Equal(t, http.StatusOK, status, body)
	}
	status, _ := e.do(http.MethodPost, "/invoke/hello", map[string]string{lifecycle.HeaderPriority: "urgent!"})
	require.Equal(t, http.StatusBadRequest, status)
	e.requestsAfter("hello", 6)
	// sleepy: 3 answered in-process, a held one, and one over its
	// function-wide limit of 1.
	for range 3 {
		_, err := e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "sleepy", Method: http.MethodGet})
		require.NoError(t, err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "sleepy", Method: http.MethodGet, Path: "/?ms=60000"})
		held <- err
	}()
	require.Eventually(t, func() bool { fs, _ := e.dp.FunctionStats("sleepy"); return fs.InFlight == 1 }, 10*time.Second, time.Millisecond)
	_, err = e.dp.Invoke(context.Background(), &faas.Request{FunctionID: "sleepy", Caller: "batch", Priority: -1})
	require.ErrorIs(t, err, lifecycle.CodeConcurrencyLimit)
	// third: beyond MaxFunctions, folded into _other.
	for range 2 {
		status, _ := e.do(http.MethodGet, "/invoke/third", nil)
		require.Equal(t, http.StatusOK, status)
	}
	e.requestsAfter("third", 2)
	// Not deployed.
	for range 2 {
		status, _ := e.do(http.MethodGet, "/invoke/nope", nil)
		require.Equal(t, http.StatusNotFound, status)
	}

	want := []struct {
		name   string
		labels l
		value  float64
	}{
		{"faas_requests_total", l{"function": "hello", "code": "ok"}, 5},
		{"faas_requests_total", l{"function": "hello", "code": "bad_request"}, 1},
		{"faas_requests_total", l{"function": "sleepy", "code": "ok"}, 3},
		{"faas_requests_total", l{"function": "sleepy", "code": "concurrency_limit"}, 1},
		{"faas_requests_total", l{"function": faasprom.OtherFunctions, "code": "ok"}, 2},
		{"faas_unknown_function_requests_total", l{}, 2},
		{"faas_request_duration_seconds", l{"function": "hello"}, 5},
		{"faas_request_duration_seconds", l{"function": "sleepy"}, 3},
		{"faas_request_starts_total", l{"function": "hello", "start": "cold"}, 1},
		{"faas_request_starts_total", l{"function": "hello", "start": "warm"}, 4},
		{"faas_request_starts_total", l{"function": "hello", "start": "busy"}, 0},
		{"faas_request_queue_seconds", l{"function": "hello"}, 1},
		{"faas_shed_total", l{"function": "sleepy", "reason": "concurrency_limit", "class": "sheddable"}, 1},
		{"faas_cold_starts_total", l{"function": "hello", "result": "ok"}, 1},
		{"faas_cold_starts_total", l{"function": "sleepy", "result": "ok"}, 1},
		{"faas_cold_starts_total", l{"function": faasprom.OtherFunctions, "result": "ok"}, 1},
		{"faas_cold_start_duration_seconds", l{"function": "hello", "step": "init"}, 1},
		{"faas_cold_start_duration_seconds", l{"function": "hello", "step": "total"}, 1},
		{"faas_instances", l{"function": "hello", "state": "ready"}, 1},
		{"faas_instances", l{"function": "sleepy", "state": "ready"}, 1},
		{"faas_in_flight_requests", l{"function": "sleepy"}, 1},
		{"faas_queue_depth", l{"function": "hello"}, 0},
		{"faas_function_memory_bytes", l{"function": "hello"}, 256 << 20},
		{"faas_billed_requests_total", l{"source": "agent"}, 10},
		{"faas_agents_instances", l{"function": "hello"}, 1},
		{"faas_agents_requests_total", l{"function": "hello", "result": "completed"}, 5},
		{"faas_agents_requests_total", l{"function": faasprom.OtherFunctions, "result": "completed"}, 2},
		{"faas_agents_in_flight_requests", l{"function": "sleepy"}, 1},
		{"faas_usage_records_total", l{"result": "made"}, 11},
	}
	url := srv.URL + "/metrics"
	var fams map[string]*dto.MetricFamily
	// The counts are exact; the wait is for the requests that the gateway
	// records after their answer went out.
	require.Eventually(t, func() bool {
		fams = scrape(t, url)
		for _, w := range want {
			if value(fams, w.name, w.labels) != w.value {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "first mismatch: %s", func() string {
		for _, w := range want {
			if got := value(fams, w.name, w.labels); got != w.value {
				return fmt.Sprintf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
			}
		}
		return "none"
	})
	assert.Nil(t, sample(fams, "faas_requests_total", l{"function": "third", "code": "ok"}), "the function label is bounded")

	// Code-cache lookups: one per cold start, hit or miss.
	hits := value(fams, "faas_code_cache_total", l{"tier": "node", "result": "hit"})
	misses := value(fams, "faas_code_cache_total", l{"tier": "node", "result": "miss"})
	assert.Equal(t, 3.0, max(hits, 0)+max(misses, 0))
	assert.Positive(t, value(fams, "faas_warmpool_created_total", l{"runtime": "go"}))
	assert.GreaterOrEqual(t, value(fams, "faas_warmpool_pods", l{"runtime": "go", "state": "idle"}), 0.0)

	// Usage in GB-seconds is the Dataplane's own sum, and the agents
	// billed what the records say (each 256 MiB hello request is at least
	// a millisecond).
	fs, _ := e.dp.FunctionStats("hello")
	assert.Equal(t, fs.Usage.GBSeconds, value(fams, "faas_usage_gb_seconds_total", l{"function": "hello"}))
	assert.Positive(t, fs.Usage.GBSeconds)
	assert.Equal(t, fs.Usage.Billed.Seconds(), value(fams, "faas_agents_billed_seconds_total", l{"function": "hello"}))

	// The protobuf format carries the native histogram, with its classic
	// buckets.
	pf := scrapeProto(t, url)
	h := sample(pf, "faas_request_duration_seconds", l{"function": "hello"}).GetHistogram()
	require.NotNil(t, h)
	assert.EqualValues(t, 5, h.GetSampleCount())
	assert.NotZero(t, h.GetSchema(), "a native histogram has a schema")
	assert.NotEmpty(t, h.GetPositiveSpan(), "and sparse buckets")
	assert.Len(t, h.GetBucket(), len(faasprom.DefaultLatencyBuckets), "and the classic buckets")

	// The core's dependency-free exposition (admin.Metrics) agrees with
	// the StatsCollector on every series it has.
	page, err := admin.Metrics(e.dp, admin.MetricsConfig{MaxFunctions: 2})
	require.NoError(t, err)
	core := httptest.NewServer(page)
	defer core.Close()
	coreFams := scrape(t, core.URL)
	fams = scrape(t, url)
	require.Contains(t, coreFams, "faas_requests_total")
	for name, mf := range coreFams {
		for _, m := range mf.GetMetric() {
			labels := l{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			assert.Equal(t, value(coreFams, name, labels), value(fams, name, labels), "%s%v", name, labels)
		}
	}

	// Closing the Dataplane ends the held request.
	require.NoError(t, e.dp.Close())
	<-held
	// The held request ended with the Dataplane: its record went to the
	// sink or, if it came after the stop, was counted as dropped.
	usage.Lock()
	n := len(records)
	usage.Unlock()
	assert.EqualValues(t, 12, uint64(n)+e.dp.Stats().Usage.Dropped, "a usage record per invocation that became a call")
}
