package agent

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"
	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

func TestBilledMillisRoundsUp(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 1}, {time.Nanosecond, 1}, {time.Millisecond, 1}, {time.Millisecond + time.Nanosecond, 2},
		{2500 * time.Microsecond, 3}, {time.Second, 1000},
	} {
		require.Equal(t, c.want, billedMillis(c.d), "%v", c.d)
	}
}

// TestBilledTrailersSumToTheStats: under concurrent load, over HTTP/1.1
// and h2c, every invocation that reached the function carries the
// X-Faas-Billed-Ms trailer after its body, refused ones carry none, and
// the trailers the clients received sum to Stats.BilledMillis exactly.
func TestBilledTrailersSumToTheStats(t *testing.T) {
	h := newHarness(t, nil)
	h.loadReady("hello", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Limits.Concurrency = 6 })

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Transport{Protocols: &p}
	defer h2.CloseIdleConnections()
	clients := []*http.Client{h.http, {Transport: h2}}

	var billed, billedCount, refused atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[g%2]
			for i := 0; i < 40; i++ {
				id, method, body := "hello", "GET", ""
				switch i % 10 {
				case 3:
					id = "someone-else" // refused: instance_reassigned
				case 5, 7:
					method, body = "POST", strings.Repeat("streamed body ", 1000)
				}
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, _ := http.NewRequest(method, "http://"+h.addr+"/?name=billing", rd)
				req.Header.Set(lifecycle.HeaderFunctionID, id)
				resp, err := c.Do(req)
				if !assertNoError(t, err) {
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !assertNoError(t, err) {
					return
				}
				trailer := resp.Trailer.Get(lifecycle.HeaderBilledMillis)
				if wire.FromFaasplane(resp) {
					refused.Add(1)
					if trailer != "" {
						t.Errorf("a refused request (%d %s) was billed %s ms", resp.StatusCode, resp.Header.Get(lifecycle.HeaderErrorCode), trailer)
					}
					continue
				}
				if resp.StatusCode != 200 || (body != "" && string(got) != body) {
					t.Errorf("status %d, %d bytes", resp.StatusCode, len(got))
				}
				ms, err := strconv.ParseInt(trailer, 10, 64)
				if err != nil || ms < 1 {
					t.Errorf("trailer %q: want a whole number of milliseconds ≥ 1 (%v)", trailer, err)
				}
				billed.Add(ms)
				billedCount.Add(1)
			}
		}()
	}
	wg.Wait()
	st, err := h.client.Stats(context.Background(), h.ctl)
	require.NoError(t, err)
	require.Equal(t, billed.Load(), st.BilledMillis, "the trailers sum to the agent's count")
	require.Equal(t, billedCount.Load(), st.Completed)
	require.Equal(t, refused.Load(), st.Rejected)
	require.GreaterOrEqual(t, refused.Load(), int64(64), "the wrong-function requests at least")
	require.Equal(t, int64(16*40), billedCount.Load()+refused.Load())
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// exposition is a parsed Prometheus text exposition: samples by their
// name with labels as written, and each family's type.
type exposition struct {
	samples map[string]float64
	types   map[string]string
}

// parseExposition parses the text format strictly enough to catch what
// expfmt would refuse: every sample's family has HELP and TYPE first, and
// every value parses.
func parseExposition(t *testing.T, text string) exposition {
	t.Helper()
	e := exposition{samples: map[string]float64{}, types: map[string]string{}}
	help := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			help[name] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			require.Len(t, f, 2, line)
			require.True(t, help[f[0]], "TYPE before HELP: %s", line)
			e.types[f[0]] = f[1]
		default:
			i := strings.LastIndexByte(line, ' ')
			require.Positive(t, i, line)
			v, err := strconv.ParseFloat(line[i+1:], 64)
			require.NoError(t, err, line)
			series := line[:i]
			name, _, _ := strings.Cut(series, "{")
			family := name
			for _, suffix := range []string{"_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && e.types[base] == "summary" {
					family = base
				}
			}
			require.Contains(t, e.types, family, "sample before its TYPE: %s", line)
			e.samples[series] = v
		}
	}
	return e
}

func TestMetricsInPrometheusFormat(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Instance = "pod-3" })
	ctx := context.Background()
	r, err := h.control(ctx, h.ctl.Token, "GET", lifecycle.PathMetrics, "")
	require.NoError(t, err)
	e := parseExposition(t, r.body)
	require.Equal(t, 0.0, e.samples["faas_agent_concurrency_limit"], "a generic pod: no function label")

	h.loadReady("hello", "hello", helloManifest, nil)
	for i := 0; i < 5; i++ {
		require.Equal(t, 200, h.mustInvoke("hello", "/").status)
	}
	requireError(t, h.mustInvoke("nobody", "/"), lifecycle.CodeInstanceReassigned)
	st, err := h.client.Stats(ctx, h.ctl)
	require.NoError(t, err)

	r, err = h.control(ctx, h.ctl.Token, "GET", lifecycle.PathMetrics, "")
	require.NoError(t, err)
	require.Equal(t, 200, r.status)
	require.Equal(t, MetricsContentType, r.header.Get("Content-Type"))
	e = parseExposition(t, r.body)
	fn := `{function_id="hello"}`
	require.Equal(t, 5.0, e.samples["faas_agent_invocations_completed_total"+fn])
	require.Equal(t, 0.0, e.samples["faas_agent_invocations_failed_total"+fn])
	require.Equal(t, 1.0, e.samples["faas_agent_invocations_rejected_total"+fn])
	require.Equal(t, float64(st.BilledMillis), e.samples["faas_agent_billed_milliseconds_total"+fn])
	require.Equal(t, 4.0, e.samples["faas_agent_concurrency_limit"+fn])
	require.Equal(t, 0.0, e.samples["faas_agent_invocations_in_flight"+fn])
	require.Equal(t, 5.0, e.samples["faas_agent_invocation_duration_seconds_count"+fn])
	require.Positive(t, e.samples[`faas_agent_invocation_duration_seconds{function_id="hello",quantile="0.99"}`])
	require.Positive(t, e.samples["faas_agent_invocation_duration_seconds_sum"+fn])
	require.Positive(t, e.samples["faas_agent_uptime_seconds"+fn])
	require.Equal(t, "summary", e.types["faas_agent_invocation_duration_seconds"])
	require.Equal(t, "counter", e.types["faas_agent_billed_milliseconds_total"])
	require.Equal(t, 1.0, e.samples[`faas_agent_info{function_id="hello",runtime="go",node="node-1",instance="pod-3",state="ready",`+
		`protocol="http1",protocol_source="detected",hot_load="false",memory_limit="none",cpu_limit="none"}`])

	r, err = h.control(ctx, "", "GET", lifecycle.PathMetrics, "")
	require.NoError(t, err)
	require.Equal(t, 401, r.status, "the metrics need the control token")
	r, err = h.send(ctx, h.addr, "GET", lifecycle.PathMetrics, "", func(hd http.Header) { hd.Set(lifecycle.HeaderFunctionID, "hello") })
	require.NoError(t, err)
	require.Equal(t, "hello, world\n", r.body, "on the invocation listener the path is the function's")
}

func TestLabelEscapes(t *testing.T) {
	require.Equal(t, `k="a\"b\\c\nd"`, label("k", "a\"b\\c\nd"))
	require.Equal(t, `x\\y\nz`, escapeHelp("x\\y\nz"))
}
