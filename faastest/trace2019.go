package faastest

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// The 2019 dataset's per-function execution-time percentiles, in the
// order of the columns of function_durations_percentiles.anon.dNN.csv.
var durationPercentiles = []float64{0, 1, 25, 50, 75, 99, 100}

// LoadDurations reads the execution times of the Azure Functions 2019
// dataset (function_durations_percentiles.anon.dNN.csv: per function, the
// average, count, minimum, maximum and the 0th, 1st, 25th, 50th, 75th,
// 99th and 100th percentiles, in milliseconds) and sets the Service
// distribution of every function of t it names to [FromPercentiles] of
// those percentiles. Rows of functions that are not in t are skipped. It
// returns the number of functions it set; every malformed input gives a
// *TraceError.
func (t *Trace) LoadDurations(r io.Reader) (int, error) {
	cr := traceReader(r)
	want := []string{"HashOwner", "HashApp", "HashFunction", "Average", "Count", "Minimum", "Maximum",
		"percentile_Average_0", "percentile_Average_1", "percentile_Average_25", "percentile_Average_50",
		"percentile_Average_75", "percentile_Average_99", "percentile_Average_100"}
	header, err := readHeader(cr, want, "")
	if err != nil {
		return 0, err
	}
	set := 0
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return set, nil
		}
		if err != nil {
			return set, &TraceError{Line: line, Err: err}
		}
		i, ok := t.index[clip(rec[1])+"/"+clip(rec[2])]
		if !ok {
			continue
		}
		points := make([]Percentile, len(durationPercentiles))
		for k, p := range durationPercentiles {
			col := 7 + k
			ms, err := milliseconds(rec[col])
			if err != nil {
				return set, &TraceError{Line: line, Column: header[col], Err: err}
			}
			points[k] = Percentile{P: p, Value: ms}
		}
		if err := checkPercentiles(points); err != nil {
			return set, &TraceError{Line: line, Err: err}
		}
		t.Service[i] = fromPercentiles(points)
		set++
	}
}

// milliseconds parses a non-negative number of milliseconds.
func milliseconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0) || v > float64(math.MaxInt64/2)/float64(time.Millisecond) {
		return 0, fmt.Errorf("want a non-negative number of milliseconds, got %q", clip(s))
	}
	return time.Duration(v * float64(time.Millisecond)), nil
}

// LoadMemory reads the memory of the Azure Functions 2019 dataset
// (app_memory_percentiles.anon.dNN.csv: per application, the sample count,
// the average allocated memory and its percentiles, in MB) and sets the
// MemoryMB of every function of t in an application it names to the
// application's average allocated memory (each instance of a function
// holds the application's memory). Rows of applications that are not in
// t are skipped. It returns the number of functions it set; every
// malformed input gives a *TraceError.
func (t *Trace) LoadMemory(r io.Reader) (int, error) {
	cr := traceReader(r)
	want := []string{"HashOwner", "HashApp", "SampleCount", "AverageAllocatedMb",
		"AverageAllocatedMb_pct1", "AverageAllocatedMb_pct5", "AverageAllocatedMb_pct25", "AverageAllocatedMb_pct50",
		"AverageAllocatedMb_pct75", "AverageAllocatedMb_pct95", "AverageAllocatedMb_pct99", "AverageAllocatedMb_pct100"}
	if _, err := readHeader(cr, want, ""); err != nil {
		return 0, err
	}
	byApp := make(map[string][]int)
	for i, app := range t.Apps {
		byApp[app] = append(byApp[app], i)
	}
	set := 0
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return set, nil
		}
		if err != nil {
			return set, &TraceError{Line: line, Err: err}
		}
		fns, ok := byApp[clip(rec[1])]
		if !ok {
			continue
		}
		mb, err := strconv.ParseFloat(rec[3], 64)
		if err != nil || !(mb > 0) || math.IsInf(mb, 0) {
			return set, &TraceError{Line: line, Column: "AverageAllocatedMb", Err: fmt.Errorf("want a positive number of MB, got %q", clip(rec[3]))}
		}
		for _, i := range fns {
			t.MemoryMB[i] = mb
		}
		set += len(fns)
	}
}

// Specs returns a spec per function of the trace: base with the
// function's ID, its Service distribution and MemoryMB when the trace has
// them (see LoadDurations and LoadMemory), for Config.Functions.
func (t *Trace) Specs(base FunctionSpec) []FunctionSpec {
	out := make([]FunctionSpec, len(t.Functions))
	for i, id := range t.Functions {
		s := base
		s.ID = id
		if t.Service[i] != nil {
			s.Service = t.Service[i]
		}
		if t.MemoryMB[i] > 0 {
			s.MemoryMB = t.MemoryMB[i]
		}
		out[i] = s
	}
	return out
}
