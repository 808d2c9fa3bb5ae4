package agent

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
)

// BenchmarkOutputLine is the agent's cost per line of function output,
// plain and structured, through the default slog sink (discarding).
func BenchmarkOutputLine(b *testing.B) {
	for _, c := range []struct{ name, line string }{
		{"plain", "GET /resize 200 12ms"},
		{"json", `{"time":"2026-01-02T03:04:05Z","level":"INFO","msg":"resized","request_id":"r-1","width":640}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			var counts logCounters
			o := &outputLog{sink: SlogSink(slog.New(slog.DiscardHandler)), maxLine: DefaultLogLineBytes,
				bucket: newTokenBucket(-1, 0, time.Now()), counts: &counts, now: time.Now}
			line := []byte(c.line)
			b.ReportAllocs()
			for b.Loop() {
				o.line(line, "stderr", false)
			}
		})
	}
}

// BenchmarkMetrics renders the Prometheus exposition of a loaded agent's
// statistics.
func BenchmarkMetrics(b *testing.B) {
	st := lifecycle.Stats{FunctionID: "resize", Runtime: "python", State: lifecycle.AgentReady, Completed: 1 << 20, BilledMillis: 1 << 30,
		Latency: lifecycle.LatencySummary{Count: 1 << 20, Mean: 2, P50: 1.5, P90: 3, P99: 9}}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		writeMetrics(&buf, st, "node-1")
	}
}

// BenchmarkBilledMillis is the billing's own cost on the request path.
func BenchmarkBilledMillis(b *testing.B) {
	var sink int64
	b.ReportAllocs()
	for b.Loop() {
		sink += billedMillis(1234567 * time.Nanosecond)
	}
	_ = sink
}
