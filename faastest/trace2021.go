package faastest

import (
	"container/heap"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// Azure2021Options selects part of an Azure Functions 2021 trace.
type Azure2021Options struct {
	// From and Until select the invocations that start in [From, Until)
	// of the trace (Until 0: to its end); the workload starts at From.
	From, Until time.Duration
	// MaxDuration is the longest execution the file holds (default 1 h).
	// The file is ordered by the end of each invocation, the workload by
	// its start (end − duration): an invocation is held back until no
	// later line can start before it, so the memory used is the
	// invocations of one MaxDuration, not the file. A longer execution
	// is an error.
	MaxDuration time.Duration
}

// Azure2021 streams the Azure Functions 2021 invocation trace
// (AzureFunctionsInvocationTraceForTwoWeeksJan2021.txt: a header
// "app,func,end_timestamp,duration" and one line per invocation with its
// end, in seconds since the start of the trace, and its execution time in
// seconds) as a [Workload]: an arrival per invocation at its start, named
// "<app>/<func>", whose Service is the recorded execution time (at least
// 1 ns). It reads the file as it goes; Err reports a malformed line after
// Next has returned false (Run returns it). A UTF-8 byte order mark is
// skipped. [Samples] holds a small synthetic file in this format.
type Azure2021 struct {
	cr      *csv.Reader
	opts    Azure2021Options
	line    int
	pending pendingHeap
	seq     uint64
	names   map[string]string
	lastEnd int64 // the latest end read
	emitted int64 // the start of the last arrival returned
	done    bool  // the file is read (or the window is past)
	err     error
	// Invocations counts the invocations returned so far.
	Invocations int64
}

// OpenAzure2021 reads the header of a 2021 trace and returns its stream;
// a bad header or option is a *TraceError.
func OpenAzure2021(r io.Reader, opts Azure2021Options) (*Azure2021, error) {
	if opts.MaxDuration == 0 {
		opts.MaxDuration = time.Hour
	}
	if opts.From < 0 || opts.Until < 0 || opts.MaxDuration < 0 || (opts.Until > 0 && opts.Until <= opts.From) {
		return nil, &TraceError{Err: fmt.Errorf("want 0 <= From < Until (or Until 0) and MaxDuration >= 0, got %v, %v, %v", opts.From, opts.Until, opts.MaxDuration)}
	}
	cr := traceReader(r)
	header, err := readHeader(cr, []string{"app", "func", "end_timestamp", "duration"}, "")
	if err != nil {
		return nil, err
	}
	if len(header) != 4 {
		return nil, &TraceError{Line: 1, Err: fmt.Errorf("header has %d columns, want app,func,end_timestamp,duration", len(header))}
	}
	return &Azure2021{cr: cr, opts: opts, line: 1, names: make(map[string]string), emitted: -1}, nil
}

// pending is an invocation read and not returned yet.
type pending struct {
	at, service int64
	seq         uint64
	fn          string
}

type pendingHeap []pending

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}
func (h pendingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)   { *h = append(*h, x.(pending)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Next implements [Workload].
func (t *Azure2021) Next() (Arrival, bool) {
	for t.err == nil {
		// The oldest held invocation goes out once no line still to come
		// can start before it.
		if len(t.pending) > 0 && (t.done || t.pending[0].at <= t.lastEnd-int64(t.opts.MaxDuration)) {
			p := heap.Pop(&t.pending).(pending)
			t.emitted = p.at
			t.Invocations++
			return Arrival{At: time.Duration(p.at) - t.opts.From, Function: p.fn, Service: time.Duration(p.service)}, true
		}
		if t.done {
			return Arrival{}, false
		}
		t.read()
	}
	return Arrival{}, false
}

// Err returns the error that ended the stream, or nil at its regular end.
func (t *Azure2021) Err() error { return t.err }

// read reads one line into the held invocations.
func (t *Azure2021) read() {
	rec, err := t.cr.Read()
	t.line++
	if err == io.EOF {
		t.done = true
		return
	}
	if err != nil {
		t.err = &TraceError{Line: t.line, Err: err}
		return
	}
	bad := func(col string, err error) { t.err = &TraceError{Line: t.line, Column: col, Err: err} }
	if rec[0] == "" || rec[1] == "" {
		t.err = &TraceError{Line: t.line, Err: errors.New("empty app or func")}
		return
	}
	end, err := seconds(rec[2])
	if err != nil {
		bad("end_timestamp", err)
		return
	}
	d, err := seconds(rec[3])
	if err != nil {
		bad("duration", err)
		return
	}
	if d > int64(t.opts.MaxDuration) {
		bad("duration", fmt.Errorf("%v exceeds MaxDuration %v", time.Duration(d), t.opts.MaxDuration))
		return
	}
	at := max(end-d, 0) // an invocation begun before the trace starts with it
	if at < t.emitted {
		t.err = &TraceError{Line: t.line, Err: fmt.Errorf("starts at %v, before an invocation already replayed (%v): the file is out of order by more than MaxDuration",
			time.Duration(at), time.Duration(t.emitted))}
		return
	}
	t.lastEnd = max(t.lastEnd, end)
	if t.opts.Until > 0 && t.lastEnd-int64(t.opts.MaxDuration) >= int64(t.opts.Until) {
		t.done = true // nothing still to come starts in the window
	}
	if at < int64(t.opts.From) || (t.opts.Until > 0 && at >= int64(t.opts.Until)) {
		return
	}
	key := rec[0] + "/" + rec[1]
	name, ok := t.names[key]
	if !ok {
		name = clip(rec[0]) + "/" + clip(rec[1])
		t.names[key] = name
	}
	t.seq++
	heap.Push(&t.pending, pending{at: at, service: max(d, 1), seq: t.seq, fn: name})
}

// seconds parses a non-negative number of seconds into nanoseconds.
func seconds(s string) (int64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0) || v > float64(math.MaxInt64/4)/float64(time.Second) {
		return 0, fmt.Errorf("want a non-negative number of seconds, got %q", clip(s))
	}
	return int64(v * float64(time.Second)), nil
}
