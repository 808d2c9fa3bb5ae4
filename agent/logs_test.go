package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name, line, stream string
		want               LogRecord
	}{
		{"plain stdout", "hello", "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelInfo, Message: "hello"}},
		{"plain stderr", "oops", "stderr", LogRecord{Time: now, Stream: "stderr", Level: slog.LevelWarn, Message: "oops"}},
		{"SDK record", `{"time":"2026-01-02T03:04:06Z","level":"ERROR","msg":"db down","request_id":"r-1","attempt":3,"host":"db"}`, "stderr",
			LogRecord{Time: now.Add(time.Second), Stream: "stderr", Level: slog.LevelError, Message: "db down", RequestID: "r-1",
				Attrs: []slog.Attr{slog.Any("attempt", 3.0), slog.Any("host", "db")}}},
		{"python levels", `{"msg":"w","level":"WARNING"}`, "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelWarn, Message: "w"}},
		{"slog offsets", `{"msg":"x","level":"INFO+2"}`, "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelInfo + 2, Message: "x"}},
		{"JSON without msg is a plain line", `{"a":1}`, "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelInfo, Message: `{"a":1}`}},
		{"malformed JSON is a plain line", `{"msg":`, "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelInfo, Message: `{"msg":`}},
		{"bad time keeps the reading time", `{"msg":"m","time":"yesterday"}`, "stdout", LogRecord{Time: now, Stream: "stdout", Level: slog.LevelInfo, Message: "m"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parseLine([]byte(c.line), c.stream, now)
			require.Equal(t, c.want.Message, got.Message)
			require.Equal(t, c.want.Level, got.Level)
			require.Equal(t, c.want.RequestID, got.RequestID)
			require.True(t, c.want.Time.Equal(got.Time), "%v", got.Time)
			require.Equal(t, len(c.want.Attrs), len(got.Attrs))
			for i := range c.want.Attrs {
				require.True(t, c.want.Attrs[i].Equal(got.Attrs[i]), "%v != %v", c.want.Attrs[i], got.Attrs[i])
			}
		})
	}
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := []struct {
		name  string
		rate  float64
		burst int
		at    []time.Duration // offsets of takes
		want  []bool
	}{
		{"burst then dry", 1, 3, []time.Duration{0, 0, 0, 0}, []bool{true, true, true, false}},
		{"refills at the rate", 10, 1, []time.Duration{0, 0, 50 * time.Millisecond, 100 * time.Millisecond}, []bool{true, false, false, true}},
		{"saves at most the burst", 100, 2, []time.Duration{0, 0, 0, time.Hour, time.Hour, time.Hour, time.Hour}, []bool{true, true, false, true, true, false, false}},
		{"unbounded", -1, 0, []time.Duration{0, 0, 0}, []bool{true, true, true}},
		{"time going back takes nothing", 1, 1, []time.Duration{0, -time.Hour}, []bool{true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newTokenBucket(c.rate, c.burst, t0)
			for i, d := range c.at {
				require.Equal(t, c.want[i], b.take(t0.Add(d)), "take %d", i)
			}
		})
	}
}

// recordingSink keeps records.
type recordingSink struct {
	mu   sync.Mutex
	recs []LogRecord
}

func (s *recordingSink) Log(_ context.Context, r LogRecord) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
}

// TestOutputLogReportsDrops: the next line that passes after drops is
// preceded by a record that says how many were dropped.
func TestOutputLogReportsDrops(t *testing.T) {
	now := time.Unix(0, 0)
	sink := &recordingSink{}
	var counts logCounters
	o := &outputLog{sink: sink, instance: "pod-1", maxLine: 64, bucket: newTokenBucket(1, 2, now), counts: &counts,
		now: func() time.Time { return now }}
	o.setFunction("f")
	o.pump(strings.NewReader("a\nb\nc\nd\n"), "stdout") // 2 pass, 2 dropped
	now = now.Add(time.Second)                          // one token back
	o.pump(strings.NewReader("e\n"+strings.Repeat("x", 100)+"\n"), "stderr")
	require.Equal(t, int64(3), counts.lines.Load())
	require.Equal(t, int64(3), counts.dropped.Load(), "c, d and the long line")
	var msgs []string
	for _, r := range sink.recs {
		require.Equal(t, "f", r.FunctionID)
		require.Equal(t, "pod-1", r.Instance)
		msgs = append(msgs, r.Message)
	}
	require.Equal(t, []string{"a", "b", "function output dropped by the agent's rate limit", "e"}, msgs)
	require.True(t, sink.recs[2].Attrs[0].Equal(slog.Int64("dropped", 2)))
}

// TestSlogSinkAttributes: the default sink's record.
func TestSlogSinkAttributes(t *testing.T) {
	rec := newLogRecorder()
	SlogSink(slog.New(rec)).Log(context.Background(), LogRecord{Time: time.Now(), FunctionID: "f", Instance: "p", Stream: "stderr",
		Level: slog.LevelError, RequestID: "r", Message: "m", Truncated: true, Attrs: []slog.Attr{slog.Int("n", 1)}})
	require.Equal(t, []string{"ERROR function output function_id=f instance=p stream=stderr request_id=r line=m truncated=true n=1"}, rec.find("function output"))
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"plain", `{"msg":"m","level":"warn","request_id":"r","x":{"y":[1,2]}}`, `{"msg":1}`, "{", "", `{"msg":"m","time":"2026-01-01T00:00:00Z"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		rec := parseLine([]byte(line), "stdout", time.Unix(0, 0))
		require.LessOrEqual(t, len(rec.Attrs), maxLogAttrs)
		if rec.RequestID == "" && len(rec.Attrs) == 0 && !strings.HasPrefix(strings.TrimSpace(line), "{") {
			require.Equal(t, line, rec.Message)
		}
	})
}

// FuzzOutputPump: whatever a function writes, no record is longer than
// the line bound, and every line is counted once: passed or dropped.
func FuzzOutputPump(f *testing.F) {
	f.Add([]byte("a\nb\n"), 256, 3)
	f.Add([]byte(strings.Repeat("x", 1000)+"\n\n\ny"), 256, 100)
	f.Fuzz(func(t *testing.T, out []byte, maxLine, burst int) {
		maxLine = 16 + int(uint(maxLine)%1024)
		burst = int(uint(burst) % 50)
		sink := &recordingSink{}
		var counts logCounters
		o := &outputLog{sink: sink, maxLine: maxLine, bucket: newTokenBucket(0, burst, time.Unix(0, 0)), counts: &counts,
			now: func() time.Time { return time.Unix(0, 0) }}
		o.pump(strings.NewReader(string(out)), "stdout")
		for _, r := range sink.recs {
			require.LessOrEqual(t, len(r.Message), maxLine)
		}
		require.LessOrEqual(t, counts.lines.Load(), int64(burst))
		require.LessOrEqual(t, counts.truncated.Load(), counts.lines.Load())
		require.Equal(t, int64(len(sink.recs)), counts.lines.Load(), "no drop record without a line that passes after it")
	})
}
