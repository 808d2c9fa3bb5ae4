package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LogRecord is one line of a function's output, made structured. A line
// that is a JSON object with a "msg" key (what the Go SDK's
// function.Logger, the Python runtime's faas.log and the Node.js runtime's
// log write) gives its message, level, time and request ID, and its other
// keys become Attrs; any other line is the Message as it is, at level Info
// (stdout) or Warn (stderr).
type LogRecord struct {
	// Time is when the line was written (the JSON "time" when it parses
	// as RFC 3339), else when the agent read it.
	Time time.Time
	// FunctionID is the loaded function ("" for the output of a runtime's
	// bootstrap before it has loaded one).
	FunctionID string
	// Instance is the pod the agent serves ([Config.Instance]).
	Instance string
	// Stream is "stdout" or "stderr".
	Stream string
	// Level is the record's level.
	Level slog.Level
	// RequestID is the invocation the line belongs to, when the function's
	// SDK said so (the JSON key "request_id").
	RequestID string
	// Message is the line, or its JSON "msg".
	Message string
	// Attrs are the other keys of a JSON line, sorted by key (at most 32).
	Attrs []slog.Attr
	// Truncated is true when the line was longer than the agent's maximum
	// line size and was cut (the rest of it is discarded).
	Truncated bool
}

// LogSink receives the function's output, one record per line. Log is
// called from the goroutine that reads the stream, so a sink that blocks
// holds the function's writes back once the pipe's buffer is full: sinks
// that ship records elsewhere should buffer and drop rather than wait.
// The agent has already applied its size and rate bounds.
type LogSink interface {
	Log(ctx context.Context, rec LogRecord)
}

// LogSinkFunc adapts a function to [LogSink].
type LogSinkFunc func(ctx context.Context, rec LogRecord)

// Log calls f(ctx, rec).
func (f LogSinkFunc) Log(ctx context.Context, rec LogRecord) { f(ctx, rec) }

// SlogSink returns the default sink: one slog record per line, with the
// message "function output" and the attributes function_id, instance,
// stream, request_id (when known), line (the message), truncated (when
// cut) and the line's own attributes.
func SlogSink(l *slog.Logger) LogSink { return slogSink{l} }

type slogSink struct{ l *slog.Logger }

func (s slogSink) Log(ctx context.Context, rec LogRecord) {
	if !s.l.Enabled(ctx, rec.Level) {
		return
	}
	r := slog.NewRecord(rec.Time, rec.Level, "function output", 0)
	if rec.FunctionID != "" {
		r.AddAttrs(slog.String("function_id", rec.FunctionID))
	}
	if rec.Instance != "" {
		r.AddAttrs(slog.String("instance", rec.Instance))
	}
	r.AddAttrs(slog.String("stream", rec.Stream))
	if rec.RequestID != "" {
		r.AddAttrs(slog.String("request_id", rec.RequestID))
	}
	r.AddAttrs(slog.String("line", rec.Message))
	if rec.Truncated {
		r.AddAttrs(slog.Bool("truncated", true))
	}
	r.AddAttrs(rec.Attrs...)
	_ = s.l.Handler().Handle(ctx, r)
}

// maxLogAttrs bounds the attributes taken from one JSON line.
const maxLogAttrs = 32

// parseLine makes a record of one line of output.
func parseLine(line []byte, stream string, now time.Time) LogRecord {
	rec := LogRecord{Time: now, Stream: stream, Level: slog.LevelInfo}
	if stream == "stderr" {
		rec.Level = slog.LevelWarn
	}
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) > 1 && trimmed[0] == '{' && trimmed[len(trimmed)-1] == '}' {
		var m map[string]any
		if json.Unmarshal(trimmed, &m) == nil {
			if msg, ok := m["msg"].(string); ok {
				rec.Message = msg
				rec.Level = slog.LevelInfo
				if lv, ok := m["level"].(string); ok {
					rec.Level = parseLevel(lv, rec.Level)
				}
				if rid, ok := m["request_id"].(string); ok {
					rec.RequestID = rid
				}
				if ts, ok := m["time"].(string); ok {
					if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
						rec.Time = t
					}
				}
				delete(m, "msg")
				delete(m, "level")
				delete(m, "request_id")
				delete(m, "time")
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys[:min(len(keys), maxLogAttrs)] {
					rec.Attrs = append(rec.Attrs, slog.Any(k, m[k]))
				}
				return rec
			}
		}
	}
	rec.Message = string(line)
	return rec
}

func parseLevel(s string, def slog.Level) slog.Level {
	switch strings.ToUpper(s) {
	case "DEBUG", "TRACE":
		return slog.LevelDebug
	case "INFO", "NOTICE":
		return slog.LevelInfo
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERROR", "CRITICAL", "FATAL":
		return slog.LevelError
	}
	var l slog.Level
	if l.UnmarshalText([]byte(s)) == nil {
		return l
	}
	return def
}

// tokenBucket bounds the lines per second of one instance: rate tokens a
// second, at most burst saved up. A negative rate means no bound.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// take reports whether a line may pass at now.
func (b *tokenBucket) take(now time.Time) bool {
	if b.rate < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// logCounters are the agent's counts of function output.
type logCounters struct {
	lines, dropped, truncated atomic.Int64
}

// outputLog turns a process's output streams into records for the sink,
// bounded in size and rate. One outputLog serves every stream of an
// instance (the bootstrap's output before the load included), so the rate
// bound is per instance.
type outputLog struct {
	sink     LogSink
	instance string
	maxLine  int
	bucket   *tokenBucket
	counts   *logCounters
	now      func() time.Time
	// function is the function the output belongs to: set at the load for
	// a bootstrap started before it.
	function atomic.Pointer[string]
	// pending counts the lines dropped since the last record that passed,
	// reported with the next one.
	pending atomic.Int64
	// oomHint is set when a line looks like an allocation failure (for
	// RLIMIT_AS, where the process reports it itself).
	oomHint atomic.Bool
}

func (o *outputLog) setFunction(id string) { o.function.Store(&id) }

func (o *outputLog) functionID() string {
	if p := o.function.Load(); p != nil {
		return *p
	}
	return ""
}

// pump reads r line by line until EOF or until r is closed.
func (o *outputLog) pump(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, o.maxLine)
	for {
		line, err := br.ReadSlice('\n')
		truncated := false
		if errors.Is(err, bufio.ErrBufferFull) {
			// Keep the start of the line, discard the rest of it.
			truncated = true
			line = bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(line) > 0 || truncated {
			o.line(line, stream, truncated)
		}
		if err != nil {
			return // EOF once every writer is gone, or the agent closed r
		}
	}
}

// oomMarkers are what runtimes print when an allocation fails.
var oomMarkers = [][]byte{
	[]byte("out of memory"), []byte("MemoryError"), []byte("Cannot allocate memory"),
	[]byte("std::bad_alloc"), []byte("Allocation failed"),
}

func (o *outputLog) line(line []byte, stream string, truncated bool) {
	for _, m := range oomMarkers {
		if bytes.Contains(line, m) {
			o.oomHint.Store(true)
			break
		}
	}
	now := o.now()
	if !o.bucket.take(now) {
		o.counts.dropped.Add(1)
		o.pending.Add(1)
		return
	}
	ctx := context.Background()
	fid := o.functionID()
	if n := o.pending.Swap(0); n > 0 {
		o.sink.Log(ctx, LogRecord{Time: now, FunctionID: fid, Instance: o.instance, Stream: stream, Level: slog.LevelWarn,
			Message: "function output dropped by the agent's rate limit", Attrs: []slog.Attr{slog.Int64("dropped", n)}})
	}
	rec := parseLine(line, stream, now)
	rec.FunctionID, rec.Instance, rec.Truncated = fid, o.instance, truncated
	o.counts.lines.Add(1)
	if truncated {
		o.counts.truncated.Add(1)
	}
	o.sink.Log(ctx, rec)
}
