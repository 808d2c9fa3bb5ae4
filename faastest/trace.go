package faastest

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// ErrTrace is matched (errors.Is) by every error of the trace loaders.
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

// Trace is a loaded per-minute invocation-count trace. Only the minutes
// with invocations are held, packed (a few bytes each), so that a day of
// tens of thousands of functions takes tens of megabytes, not the
// gigabyte of its counts as integers.
type Trace struct {
	// Functions lists the functions in file order, named
	// "<HashApp>/<HashFunction>" (HashOwner is dropped: apps are unique).
	Functions []string
	// Triggers holds each function's trigger type ("http", "timer"...).
	Triggers []string
	// Apps holds each function's HashApp (what the memory file is keyed
	// by).
	Apps []string
	// Minutes is the length of the window, in minutes.
	Minutes int
	// Total is the number of invocations in the window.
	Total int64
	// Service holds each function's execution-time distribution once
	// [Trace.LoadDurations] has read it (nil: unknown), and MemoryMB each
	// function's instance memory once [Trace.LoadMemory] has (0:
	// unknown).
	Service  []Dist
	MemoryMB []float64

	rows  [][]byte // per function: (minute delta, count) uvarint pairs
	index map[string]int
	seed  uint64
}

// maxTraceLine bounds a CSV record, guarding the reader against a file with
// no newlines.
const maxTraceLine = 1 << 20

// traceReader returns a CSV reader of r that skips a UTF-8 byte order mark
// (which spreadsheet programs write) and fails on a line longer than
// maxTraceLine.
func traceReader(r io.Reader) *csv.Reader {
	br := bufio.NewReaderSize(io.LimitReader(r, 1<<36), 64<<10)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(&lineLimiter{r: br, max: maxTraceLine})
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // every row as wide as the header
	return cr
}

// readHeader reads a header and checks that it starts with want.
func readHeader(cr *csv.Reader, want []string, more string) ([]string, error) {
	header, err := cr.Read()
	if err != nil {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("reading header: %w", errOrEOF(err))}
	}
	if len(header) < len(want) {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("header has %d columns, want %s%s", len(header), joinQuoted(want), more)}
	}
	for i, w := range want {
		if header[i] != w {
			return nil, &TraceError{Line: 1, Column: strconv.Itoa(i + 1), Err: fmt.Errorf("want %q, got %q", w, clip(header[i]))}
		}
	}
	return slices.Clone(header), nil
}

func joinQuoted(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(x)
	}
	return b.String()
}

// LoadAzureTrace reads the per-minute invocation counts of the Azure
// Functions 2019 public dataset (files named
// invocations_per_function_md.anon.dNN.csv): a header
// "HashOwner,HashApp,HashFunction,Trigger,1,2,...,1440" and one row per
// function with the number of invocations in each minute of the day. A
// UTF-8 byte order mark is skipped. Download the dataset yourself (it is
// not redistributed here); [Samples] holds a small synthetic file in the
// same format. Every malformed input gives a *TraceError.
//
// The counts are held packed, only the minutes with invocations (see
// [Trace]); the window of TraceOptions bounds what is read and kept.
// [Trace.LoadDurations] and [Trace.LoadMemory] add the dataset's
// execution-time and memory files.
func LoadAzureTrace(r io.Reader, opts TraceOptions) (*Trace, error) {
	if opts.MaxPerMinute <= 0 {
		opts.MaxPerMinute = 1_000_000
	}
	if opts.FirstMinute <= 0 {
		opts.FirstMinute = 1
	}
	opts.MaxPerMinute = min(opts.MaxPerMinute, math.MaxInt32)
	cr := traceReader(r)
	const fixed = 4
	header, err := readHeader(cr, []string{"HashOwner", "HashApp", "HashFunction", "Trigger"}, " and at least one minute")
	if err != nil {
		return nil, err
	}
	if len(header) < fixed+1 {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("header has %d columns, want the 4 hash/trigger columns and at least one minute", len(header))}
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
	t := &Trace{Minutes: last - first, seed: opts.Seed, index: make(map[string]int)}
	triggers := map[string]string{} // interned: a handful of trigger types
	var row []byte
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
		row = row[:0]
		prev := -1
		for m := first; m < last; m++ {
			field := rec[fixed+m]
			if field == "0" {
				continue // most cells: no need to parse
			}
			n, err := strconv.Atoi(field)
			if err != nil || n < 0 || n > opts.MaxPerMinute {
				return nil, &TraceError{Line: line, Column: header[fixed+m], Err: fmt.Errorf("count must be an integer in [0, %d], got %q", opts.MaxPerMinute, clip(field))}
			}
			if n == 0 {
				continue
			}
			row = binary.AppendUvarint(row, uint64(m-first-prev))
			row = binary.AppendUvarint(row, uint64(n))
			prev = m - first
			t.Total += int64(n)
		}
		name := clip(rec[1]) + "/" + clip(rec[2])
		if _, dup := t.index[name]; dup {
			return nil, &TraceError{Line: line, Err: fmt.Errorf("function %q listed twice", name)}
		}
		t.index[name] = len(t.Functions)
		trig, ok := triggers[rec[3]]
		if !ok {
			trig = clip(rec[3])
			triggers[trig] = trig
		}
		t.Functions = append(t.Functions, name)
		t.Apps = append(t.Apps, name[:len(clip(rec[1]))])
		t.Triggers = append(t.Triggers, trig)
		t.rows = append(t.rows, slices.Clone(row))
	}
	if len(t.Functions) == 0 {
		return nil, &TraceError{Err: errors.New("no function rows")}
	}
	t.Service = make([]Dist, len(t.Functions))
	t.MemoryMB = make([]float64, len(t.Functions))
	return t, nil
}

// Row returns function i's invocations in each minute of the window.
func (t *Trace) Row(i int) []int {
	out := make([]int, t.Minutes)
	for m, n := range t.cells(i) {
		out[m] = n
	}
	return out
}

// cells yields function i's minutes with invocations and their counts.
func (t *Trace) cells(i int) func(yield func(minute, count int) bool) {
	return func(yield func(int, int) bool) {
		row, m := t.rows[i], -1
		for len(row) > 0 {
			d, k := binary.Uvarint(row)
			n, j := binary.Uvarint(row[k:])
			row = row[k+j:]
			m += int(d)
			if !yield(m, int(n)) {
				return
			}
		}
	}
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
// merged across functions in time order. It generates one minute at a
// time and visits only the functions invoked in it, so a day of a large
// trace streams in the memory of its busiest minute.
func (t *Trace) Workload() Workload {
	st := &traceStream{t: t, r: newRand(t.seed), next: make([]traceCursor, len(t.rows)), due: make([][]int32, t.Minutes)}
	for f := range t.rows {
		st.next[f].minute = -1 // the first pair counts from before minute 0
		st.advance(f)
	}
	return st
}

// traceStream generates a Trace's arrivals minute by minute: every
// function waits in the list of the next minute it is invoked in.
type traceStream struct {
	t      *Trace
	r      *rand.Rand
	next   []traceCursor // per function: where its row goes on
	due    [][]int32     // per minute: the functions invoked in it
	buf    []Arrival
	i      int
	minute int
}

type traceCursor struct {
	off    int32 // into the function's row
	minute int32 // of the pair at off
	count  int32
}

// advance reads function f's next (minute, count) pair and files f under
// that minute.
func (st *traceStream) advance(f int) {
	c := &st.next[f]
	row := st.t.rows[f]
	if int(c.off) >= len(row) {
		return
	}
	d, k := binary.Uvarint(row[c.off:])
	n, j := binary.Uvarint(row[int(c.off)+k:])
	c.off += int32(k + j)
	c.minute += int32(d)
	c.count = int32(n)
	st.due[c.minute] = append(st.due[c.minute], int32(f))
}

// Next implements [Workload].
func (st *traceStream) Next() (Arrival, bool) {
	for st.i >= len(st.buf) {
		if st.minute >= st.t.Minutes {
			return Arrival{}, false
		}
		st.buf, st.i = st.buf[:0], 0
		base := time.Duration(st.minute) * time.Minute
		fns := st.due[st.minute]
		slices.Sort(fns) // file order, as the placement's draws go
		for _, f := range fns {
			for range st.next[f].count {
				st.buf = append(st.buf, Arrival{At: base + time.Duration(st.r.Int64N(int64(time.Minute))), Function: st.t.Functions[f]})
			}
			st.advance(int(f))
		}
		st.due[st.minute] = nil
		slices.SortStableFunc(st.buf, func(a, b Arrival) int { return cmp.Compare(a.At, b.At) })
		st.minute++
	}
	st.i++
	return st.buf[st.i-1], true
}
