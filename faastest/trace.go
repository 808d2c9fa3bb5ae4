package faastest

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"
)

// ErrTrace is matched (errors.Is) by every error of [LoadAzureTrace].
var ErrTrace = errors.New("faastest: bad trace")

// TraceError locates a problem in a trace file.
type TraceError struct {
	Line   int // 1-based; 0 when not tied to a line
	Column string
	Err    error
}

func (e *TraceError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("faastest: trace: %v", e.Err)
	}
	if e.Column != "" {
		return fmt.Sprintf("faastest: trace line %d, column %s: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("faastest: trace line %d: %v", e.Line, e.Err)
}

// Unwrap returns the cause.
func (e *TraceError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTrace) true.
func (e *TraceError) Is(target error) bool { return target == ErrTrace }

// TraceOptions selects part of a trace.
type TraceOptions struct {
	// MaxFunctions keeps the first n functions of the file (0: all).
	MaxFunctions int
	// FirstMinute and Minutes select a window of the day (1-based first
	// minute, default 1; Minutes 0 means to the end of the file's columns).
	FirstMinute, Minutes int
	// MaxPerMinute rejects a count above it, guarding against corrupt
	// files that would expand to billions of arrivals (default 1,000,000).
	MaxPerMinute int
	// Seed places each minute's invocations at uniform random offsets
	// within the minute, reproducibly.
	Seed uint64
}

// Trace is a loaded per-minute invocation-count trace.
type Trace struct {
	// Functions lists the functions in file order, named
	// "<HashApp>/<HashFunction>" (HashOwner is dropped: apps are unique).
	Functions []string
	// Triggers holds each function's trigger type ("http", "timer"...).
	Triggers []string
	// Counts[i][m] is function i's invocations in minute m of the window.
	Counts [][]int
	// Total is the number of invocations in the window.
	Total int64
	seed  uint64
}

// maxTraceLine bounds a CSV record, guarding the reader against a file with
// no newlines.
const maxTraceLine = 1 << 20

// LoadAzureTrace reads the per-minute invocation counts of the Azure
// Functions 2019 public dataset (files named
// invocations_per_function_md.anon.dNN.csv): a header
// "HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440" and one row per
// function with the number of invocations in each minute of the day.
// Download the dataset yourself (it is not redistributed here); tests use a
// small file in the same format. Every malformed input gives a *TraceError.
func LoadAzureTrace(r io.Reader, opts TraceOptions) (*Trace, error) {
	if opts.MaxPerMinute <= 0 {
		opts.MaxPerMinute = 1_000_000
	}
	if opts.FirstMinute <= 0 {
		opts.FirstMinute = 1
	}
	cr := csv.NewReader(&lineLimiter{r: bufio.NewReaderSize(io.LimitReader(r, 1<<34), 64<<10), max: maxTraceLine})
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	if err != nil {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("reading header: %w", errOrEOF(err))}
	}
	const fixed = 4
	want := []string{"HashOwner", "HashApp", "HashFunction", "Trigger"}
	if len(header) < fixed+1 {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("header has %d columns, want the 4 hash/trigger columns and at least one minute", len(header))}
	}
	for i, w := range want {
		if header[i] != w {
			return nil, &TraceError{Line: 1, Column: strconv.Itoa(i + 1), Err: fmt.Errorf("want %q, got %q", w, clip(header[i]))}
		}
	}
	minutes := len(header) - fixed
	for i := fixed; i < len(header); i++ {
		if n, err := strconv.Atoi(header[i]); err != nil || n != i-fixed+1 {
			return nil, &TraceError{Line: 1, Column: strconv.Itoa(i + 1), Err: fmt.Errorf("minute columns must be 1,2,3...; got %q", clip(header[i]))}
		}
	}
	first := opts.FirstMinute - 1
	if first >= minutes {
		return nil, &TraceError{Err: fmt.Errorf("first minute %d beyond the trace's %d minutes", opts.FirstMinute, minutes)}
	}
	last := minutes
	if opts.Minutes > 0 {
		last = min(minutes, first+opts.Minutes)
	}
	t := &Trace{seed: opts.Seed}
	for line := 2; opts.MaxFunctions <= 0 || len(t.Functions) < opts.MaxFunctions; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &TraceError{Line: line, Err: err}
		}
		if rec[1] == "" || rec[2] == "" {
			return nil, &TraceError{Line: line, Err: errors.New("empty HashApp or HashFunction")}
		}
		counts := make([]int, last-first)
		for m := first; m < last; m++ {
			n, err := strconv.Atoi(rec[fixed+m])
			if err != nil || n < 0 || n > opts.MaxPerMinute {
				return nil, &TraceError{Line: line, Column: header[fixed+m], Err: fmt.Errorf("count must be an integer in [0, %d], got %q", opts.MaxPerMinute, clip(rec[fixed+m]))}
			}
			counts[m-first] = n
			t.Total += int64(n)
		}
		t.Functions = append(t.Functions, clip(rec[1])+"/"+clip(rec[2]))
		t.Triggers = append(t.Triggers, clip(rec[3]))
		t.Counts = append(t.Counts, counts)
	}
	if len(t.Functions) == 0 {
		return nil, &TraceError{Err: errors.New("no function rows")}
	}
	return t, nil
}

// errLongLine reports a line longer than maxTraceLine.
var errLongLine = fmt.Errorf("line longer than %d bytes", maxTraceLine)

// lineLimiter fails a read once more than max bytes pass without a
// newline, so that a file without newlines cannot make the CSV reader
// buffer all of it.
type lineLimiter struct {
	r   io.Reader
	max int
	run int // bytes since the last newline
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.run = 0
		} else if l.run++; l.run > l.max {
			return 0, errLongLine
		}
	}
	return n, err
}

func errOrEOF(err error) error {
	if err == io.EOF {
		return errors.New("empty file")
	}
	return err
}

func clip(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}

// Workload returns the trace's arrivals: each minute's count of each
// function placed at uniformly random offsets within that minute (seeded),
// merged across functions in time order. It generates one minute at a time,
// so a day of a large trace does not have to fit in memory.
func (t *Trace) Workload() Workload {
	r := newRand(t.seed)
	minutes := 0
	if len(t.Counts) > 0 {
		minutes = len(t.Counts[0])
	}
	var buf []Arrival
	minute, i := 0, 0
	return WorkloadFunc(func() (Arrival, bool) {
		for i >= len(buf) {
			if minute >= minutes {
				return Arrival{}, false
			}
			buf, i = buf[:0], 0
			base := time.Duration(minute) * time.Minute
			for f, counts := range t.Counts {
				for range counts[minute] {
					buf = append(buf, Arrival{At: base + time.Duration(r.Int64N(int64(time.Minute))), Function: t.Functions[f]})
				}
			}
			sort.SliceStable(buf, func(a, b int) bool { return buf[a].At < buf[b].At })
			minute++
		}
		i++
		return buf[i-1], true
	})
}
