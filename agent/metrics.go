package agent

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/faasplane/faas/lifecycle"
)

// MetricsContentType is the content type of GET /v1/metrics: the
// Prometheus text exposition format, version 0.0.4.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// serveMetrics handles GET /v1/metrics: the agent's statistics (those of
// /v1/stats) in the Prometheus text exposition format. Every series
// carries the function_id label once a function is loaded, and
// faas_agent_info carries the agent's identity and configuration.
func (a *Agent) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !onlyMethod(w, r, http.MethodGet) {
		return
	}
	st := a.stats()
	var b bytes.Buffer
	writeMetrics(&b, st, a.cfg.Node)
	w.Header().Set("Content-Type", MetricsContentType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

// metricsWriter writes one family after another in the exposition format.
type metricsWriter struct {
	b      *bytes.Buffer
	labels string // `function_id="f"`, or ""
}

func (m *metricsWriter) family(name, typ, help string) {
	m.b.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes name{labels,extra} value.
func (m *metricsWriter) sample(name, extra string, v float64) {
	m.b.WriteString(name)
	labels := m.labels
	if extra != "" {
		if labels != "" {
			labels += ","
		}
		labels += extra
	}
	if labels != "" {
		m.b.WriteString("{" + labels + "}")
	}
	m.b.WriteByte(' ')
	m.b.WriteString(formatFloat(v))
	m.b.WriteByte('\n')
}

func (m *metricsWriter) one(name, typ, help string, v float64) {
	m.family(name, typ, help)
	m.sample(name, "", v)
}

func writeMetrics(b *bytes.Buffer, st lifecycle.Stats, node string) {
	m := &metricsWriter{b: b}
	if st.FunctionID != "" {
		m.labels = label("function_id", st.FunctionID)
	}
	m.family("faas_agent_info", "gauge", "The agent's identity and how it runs the function (always 1).")
	m.sample("faas_agent_info", strings.Join([]string{
		label("runtime", st.Runtime), label("node", node), label("instance", st.Instance), label("state", st.State),
		label("protocol", st.Protocol), label("protocol_source", st.ProtocolSource), label("hot_load", strconv.FormatBool(st.HotLoad)),
		label("memory_limit", st.MemoryLimit), label("cpu_limit", st.CPULimit),
	}, ","), 1)
	m.one("faas_agent_invocations_completed_total", "counter", "Invocations that reached the function, whatever their outcome.", float64(st.Completed))
	m.one("faas_agent_invocations_failed_total", "counter", "Invocations that reached the function and got no answer, a 5xx, or were aborted.", float64(st.Failed))
	m.one("faas_agent_invocations_rejected_total", "counter", "Requests refused before the function (wrong function, not ready, over the limit, exited).", float64(st.Rejected))
	m.one("faas_agent_invocations_in_flight", "gauge", "Invocations in flight on the function.", float64(st.InFlight))
	m.one("faas_agent_concurrency_limit", "gauge", "The instance's concurrency limit (0 before a load).", float64(st.Limit))
	m.one("faas_agent_billed_milliseconds_total", "counter", "Billed time of the invocations that reached the function, each rounded up to a millisecond.", float64(st.BilledMillis))
	m.family("faas_agent_invocation_duration_seconds", "summary", "Latency of the invocations that reached the function, as the agent measured it.")
	for _, q := range []struct {
		q string
		v float64
	}{{"0.5", st.Latency.P50}, {"0.9", st.Latency.P90}, {"0.99", st.Latency.P99}} {
		m.sample("faas_agent_invocation_duration_seconds", `quantile="`+q.q+`"`, q.v/1000)
	}
	m.sample("faas_agent_invocation_duration_seconds_sum", "", st.Latency.Mean*float64(st.Latency.Count)/1000)
	m.sample("faas_agent_invocation_duration_seconds_count", "", float64(st.Latency.Count))
	m.one("faas_agent_memory_limit_bytes", "gauge", "The instance's memory limit (0: none).", float64(st.MemoryLimitBytes))
	m.one("faas_agent_cpu_limit_millicores", "gauge", "The instance's CPU limit in thousandths of a core (0: none).", float64(st.MilliCPU))
	m.one("faas_agent_memory_limit_kills_total", "counter", "Function processes ended for exceeding their memory limit.", float64(st.MemoryLimitKills))
	m.one("faas_agent_log_lines_total", "counter", "Lines of function output passed to the log sink.", float64(st.LogLines))
	m.one("faas_agent_log_lines_dropped_total", "counter", "Lines of function output dropped by the rate limit.", float64(st.LogLinesDropped))
	m.one("faas_agent_log_lines_truncated_total", "counter", "Lines of function output cut to the maximum line size.", float64(st.LogLinesTruncated))
	m.one("faas_agent_uptime_seconds", "gauge", "Time since the agent started.", st.Uptime.Seconds())
}

// label renders name="value" with the exposition format's escapes.
func label(name, value string) string {
	var b strings.Builder
	b.WriteString(name + `="`)
	for _, r := range value {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "\n", `\n`)
}

func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}
