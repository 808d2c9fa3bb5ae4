package faastest

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// azureCSV writes a small file in the Azure Functions 2019 format.
func azureCSV(minutes int, rows [][]int) string {
	var b strings.Builder
	b.WriteString("HashOwner,HashApp,HashFunction,Trigger")
	for m := 1; m <= minutes; m++ {
		fmt.Fprintf(&b, ",%d", m)
	}
	b.WriteString("\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "owner%d,app%d,fn%d,http", i, i, i)
		for _, c := range r {
			fmt.Fprintf(&b, ",%d", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestLoadAzureTrace(t *testing.T) {
	in := azureCSV(5, [][]int{{0, 3, 0, 1, 0}, {10, 0, 0, 0, 2}})
	tr, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"app0/fn0", "app1/fn1"}, tr.Functions)
	assert.Equal(t, []string{"http", "http"}, tr.Triggers)
	assert.EqualValues(t, 16, tr.Total)

	arr := Collect(tr.Workload(), 0)
	require.Len(t, arr, 16)
	sorted(t, arr)
	perMinute := map[string][]int{}
	for _, a := range arr {
		m := int(a.At / time.Minute)
		if perMinute[a.Function] == nil {
			perMinute[a.Function] = make([]int, 5)
		}
		perMinute[a.Function][m]++
	}
	assert.Equal(t, []int{0, 3, 0, 1, 0}, perMinute["app0/fn0"])
	assert.Equal(t, []int{10, 0, 0, 0, 2}, perMinute["app1/fn1"])

	again, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, arr, Collect(again.Workload(), 0), "same seed, same placement")
}

func TestLoadAzureTraceWindowAndLimit(t *testing.T) {
	in := azureCSV(5, [][]int{{1, 2, 3, 4, 5}, {1, 1, 1, 1, 1}, {9, 9, 9, 9, 9}})
	tr, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{MaxFunctions: 2, FirstMinute: 2, Minutes: 3})
	require.NoError(t, err)
	assert.Equal(t, []int{2, 3, 4}, tr.Row(0))
	assert.Equal(t, []int{1, 1, 1}, tr.Row(1))
	assert.Equal(t, 3, tr.Minutes)
	assert.EqualValues(t, 12, tr.Total)
}

func TestLoadAzureTraceRejectsBadInput(t *testing.T) {
	good := azureCSV(2, [][]int{{1, 2}})
	tests := []struct {
		name, in string
		opts     TraceOptions
		want     string
	}{
		{"empty", "", TraceOptions{}, "empty file"},
		{"wrong header", strings.Replace(good, "HashApp", "App", 1), TraceOptions{}, `want "HashApp"`},
		{"no minutes", "HashOwner,HashApp,HashFunction,Trigger\n", TraceOptions{}, "at least one minute"},
		{"minute columns out of order", strings.Replace(good, ",1,2\n", ",2,1\n", 1), TraceOptions{}, "minute columns"},
		{"negative count", strings.Replace(good, ",http,1,2", ",http,-1,2", 1), TraceOptions{}, "count must be"},
		{"non-numeric count", strings.Replace(good, ",http,1,2", ",http,x,2", 1), TraceOptions{}, "count must be"},
		{"count over cap", good, TraceOptions{MaxPerMinute: 1}, "count must be"},
		{"short row", good + "o,a,f,http,1\n", TraceOptions{}, "wrong number of fields"},
		{"empty app", strings.Replace(good, "app0", "", 1), TraceOptions{}, "empty HashApp"},
		{"no rows", "HashOwner,HashApp,HashFunction,Trigger,1\n", TraceOptions{}, "no function rows"},
		{"window beyond trace", good, TraceOptions{FirstMinute: 9}, "beyond"},
		{"row without newline", good + "o,a,f,http," + strings.Repeat("1", maxTraceLine+1), TraceOptions{}, "longer than"},
		{"header without newline", "HashOwner," + strings.Repeat("x", maxTraceLine+1), TraceOptions{}, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAzureTrace(strings.NewReader(tt.in), tt.opts)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrTrace), "typed: %v", err)
			var te *TraceError
			require.ErrorAs(t, err, &te)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func FuzzLoadAzureTrace(f *testing.F) {
	f.Add([]byte(azureCSV(3, [][]int{{1, 0, 2}, {0, 0, 5}})))
	f.Add([]byte("HashOwner,HashApp,HashFunction,Trigger,1\na,b,c,d,99999999999\n"))
	f.Add([]byte("\"unterminated"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := LoadAzureTrace(bytes.NewReader(data), TraceOptions{MaxPerMinute: 1000, Minutes: 60})
		if err != nil {
			if !errors.Is(err, ErrTrace) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		n := int64(0)
		for range Collect(tr.Workload(), 0) {
			n++
		}
		if n != tr.Total {
			t.Fatalf("workload yields %d arrivals, trace says %d", n, tr.Total)
		}
	})
}

func TestLoadAzureTraceSkipsAByteOrderMark(t *testing.T) {
	in := azureCSV(3, [][]int{{1, 0, 2}})
	plain, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	bom, err := LoadAzureTrace(strings.NewReader("\xef\xbb\xbf"+in), TraceOptions{Seed: 1})
	require.NoError(t, err)
	assert.Equal(t, plain.Functions, bom.Functions)
	assert.Equal(t, plain.Row(0), bom.Row(0))
	_, err = LoadAzureTrace(strings.NewReader("\xef\xbb"+in), TraceOptions{})
	assert.ErrorIs(t, err, ErrTrace, "half a mark is a bad header")
}

// TestTraceStreamsOnlyInvokedMinutes checks the packed rows against the
// counts they came from on a trace whose functions are idle most of the
// day, and that the stream yields the same arrivals in the same order as
// the counts would, minute by minute.
func TestTraceStreamsOnlyInvokedMinutes(t *testing.T) {
	r := newRand(3)
	rows := make([][]int, 30)
	for i := range rows {
		rows[i] = make([]int, 240)
		for m := range rows[i] {
			if r.IntN(10) == 0 {
				rows[i][m] = 1 + r.IntN(300)
			}
		}
	}
	tr, err := LoadAzureTrace(strings.NewReader(azureCSV(240, rows)), TraceOptions{Seed: 9})
	require.NoError(t, err)
	for i := range rows {
		require.Equal(t, rows[i], tr.Row(i))
	}
	arr := Collect(tr.Workload(), 0)
	require.EqualValues(t, tr.Total, len(arr))
	sorted(t, arr)
	per := make([][]int, len(rows))
	for i := range per {
		per[i] = make([]int, 240)
	}
	for _, a := range arr {
		i := slices.Index(tr.Functions, a.Function)
		per[i][a.At/time.Minute]++
	}
	assert.Equal(t, rows, per)
}

func TestLoadDurationsAndMemory(t *testing.T) {
	tr := sample2019(t, TraceOptions{Seed: 1})
	specs := tr.Specs(FunctionSpec{Concurrency: 4})
	require.Len(t, specs, len(tr.Functions))
	for i, s := range specs {
		assert.Equal(t, tr.Functions[i], s.ID)
		assert.Equal(t, 4, s.Concurrency)
		assert.Positive(t, s.MemoryMB)
		assert.Equal(t, tr.Service[i], s.Service)
	}

	head := "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n"
	in := azureCSV(2, [][]int{{1, 1}, {0, 3}})
	for _, tt := range []struct {
		name, file string
		set        int
		want       string // error
	}{
		{"one function", head + "owner0,app0,fn0,100,2,10.0,900.0,10,20,50,100,200,800,900\n", 1, ""},
		{"unknown functions are skipped", head + "o,x,y,1,1,1,1,1,1,1,1,1,1,1\nowner1,app1,fn1,5,1,1,9,1,2,3,4,5,6,9\n", 1, ""},
		{"bad header", strings.Replace(head, "Average,", "Mean,", 1), 0, `want "Average"`},
		{"negative", head + "owner0,app0,fn0,1,1,1,1,-1,1,1,1,1,1,1\n", 0, "non-negative"},
		{"decreasing", head + "owner0,app0,fn0,1,1,1,1,5,4,1,1,1,1,1\n", 0, "decrease"},
		{"short row", head + "owner0,app0,fn0,1\n", 0, "wrong number of fields"},
		{"with a byte order mark", "\xef\xbb\xbf" + head + "owner0,app0,fn0,100,2,10.0,900.0,10,20,50,100,200,800,900\n", 1, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{})
			require.NoError(t, err)
			n, err := tr.LoadDurations(strings.NewReader(tt.file))
			if tt.want != "" {
				require.ErrorIs(t, err, ErrTrace)
				assert.Contains(t, err.Error(), tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.set, n)
		})
	}
	tr2, err := LoadAzureTrace(strings.NewReader(in), TraceOptions{})
	require.NoError(t, err)
	n, err := tr2.LoadDurations(strings.NewReader(head + "owner0,app0,fn0,100,2,10.0,900.0,10,20,50,100,200,800,900\n"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	d := tr2.Service[0]
	assert.Nil(t, tr2.Service[1], "not in the file: the default distribution")
	// The quantile function through (0,10) (1,20) (25,50) (50,100)
	// (75,200) (99,800) (100,900) ms: its integral.
	assert.InDelta(t, float64(193*time.Millisecond+300*time.Microsecond), float64(d.Mean()), float64(time.Millisecond))
	var sum time.Duration
	rr := newRand(1)
	for range 50_000 {
		v := d.Sample(rr)
		require.GreaterOrEqual(t, v, 10*time.Millisecond)
		require.LessOrEqual(t, v, 900*time.Millisecond)
		sum += v
	}
	assert.InEpsilon(t, float64(d.Mean()), float64(sum/50_000), 0.015, "samples average to the mean")

	memHead := "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n"
	n, err = tr2.LoadMemory(strings.NewReader(memHead + "owner1,app1,10,256,1,1,1,1,1,1,1,1\nx,y,1,1,1,1,1,1,1,1,1,1\n"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []float64{0, 256}, tr2.MemoryMB)
	_, err = tr2.LoadMemory(strings.NewReader(memHead + "owner1,app1,10,0,1,1,1,1,1,1,1,1\n"))
	assert.ErrorIs(t, err, ErrTrace, "no memory is not a size")
	_, err = tr2.LoadMemory(strings.NewReader("HashOwner,HashApp\n"))
	assert.ErrorIs(t, err, ErrTrace)
}

func TestFromPercentilesRejectsBadPoints(t *testing.T) {
	for _, pts := range [][]Percentile{
		nil,
		{{P: -1, Value: 1}},
		{{P: 101, Value: 1}},
		{{P: 10, Value: 1}, {P: 10, Value: 2}},
		{{P: 10, Value: 2}, {P: 20, Value: 1}},
		{{P: 10, Value: -1}},
	} {
		_, err := FromPercentiles(pts)
		assert.ErrorIs(t, err, ErrTrace, "%v", pts)
	}
	d, err := FromPercentiles([]Percentile{{P: 50, Value: time.Second}})
	require.NoError(t, err)
	assert.Equal(t, time.Second, d.Mean(), "one point: a constant")
	assert.Equal(t, time.Second, d.Sample(newRand(1)))
	assert.Contains(t, d.String(), "p50 1s")
}

// TestSampleReplay2019 replays the bundled 2019 sample with its durations
// and memory: every invocation of the trace is simulated, and the memory
// of each function weighs its instance-seconds.
func TestSampleReplay2019(t *testing.T) {
	tr := sample2019(t, TraceOptions{Seed: 1, FirstMinute: 481, Minutes: 240}) // 8:00 to 12:00
	cfg := Config{Seed: 1, Functions: tr.Specs(FunctionSpec{}), Until: 4 * time.Hour}
	r, err := Run(cfg, tr.Workload())
	require.NoError(t, err)
	assert.Equal(t, tr.Total, r.Total.Invocations)
	assert.Equal(t, r.Total.Invocations, r.Total.Completed+r.Total.Shed+r.Total.QueueFull+r.Total.TimedOut+r.Total.Limited+r.Total.Failed)
	var gb float64
	for i, id := range tr.Functions {
		f, ok := r.Function(id)
		require.True(t, ok)
		assert.InDelta(t, f.InstanceSeconds*tr.MemoryMB[i]/1024, f.GBSeconds, 1e-6*f.GBSeconds+1e-9, id)
		gb += f.GBSeconds
		if f.Completed > 50 {
			// Latency includes the execution time the trace gives.
			assert.Greater(t, f.Latency.Mean, tr.Service[i].Mean()/2, id)
		}
	}
	assert.InDelta(t, gb, r.Total.GBSeconds, 1e-6*gb)
	assert.Greater(t, r.Total.IdleGBSeconds, 0.0)
}

func TestAzure2021Stream(t *testing.T) {
	// Ordered by end; the second invocation starts first.
	in := "app,func,end_timestamp,duration\n" +
		"a,f,10.0,1.0\n" + // starts at 9
		"b,g,10.5,3.0\n" + // starts at 7.5
		"a,f,20.0,0\n" + // starts at 20, a duration below the trace's resolution
		"c,h,30.0,0.25\n"
	w, err := OpenAzure2021(strings.NewReader(in), Azure2021Options{MaxDuration: 5 * time.Second})
	require.NoError(t, err)
	arr := Collect(w, 0)
	require.NoError(t, w.Err())
	assert.Equal(t, []Arrival{
		{At: 7500 * time.Millisecond, Function: "b/g", Service: 3 * time.Second},
		{At: 9 * time.Second, Function: "a/f", Service: time.Second},
		{At: 20 * time.Second, Function: "a/f", Service: 1},
		{At: 29750 * time.Millisecond, Function: "c/h", Service: 250 * time.Millisecond},
	}, arr)
	assert.EqualValues(t, 4, w.Invocations)

	w, err = OpenAzure2021(strings.NewReader("\xef\xbb\xbf"+in), Azure2021Options{From: 8 * time.Second, Until: 25 * time.Second, MaxDuration: 5 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, []Arrival{
		{At: time.Second, Function: "a/f", Service: time.Second},
		{At: 12 * time.Second, Function: "a/f", Service: 1},
	}, Collect(w, 0), "the window [8 s, 25 s), shifted to start at 0, through a byte order mark")

	for _, tt := range []struct{ name, in, want string }{
		{"header", "app,func,end,duration\n", `want "end_timestamp"`},
		{"too long", "app,func,end_timestamp,duration\na,f,100,10\n", "exceeds MaxDuration"},
		{"out of order", "app,func,end_timestamp,duration\na,f,100,1\na,f,120,1\na,f,50,1\n", "out of order"},
		{"not a number", "app,func,end_timestamp,duration\na,f,x,1\n", "seconds"},
		{"negative", "app,func,end_timestamp,duration\na,f,10,-1\n", "seconds"},
		{"empty app", "app,func,end_timestamp,duration\n,f,10,1\n", "empty app"},
		{"short line", "app,func,end_timestamp,duration\na,f,10\n", "wrong number of fields"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := OpenAzure2021(strings.NewReader(tt.in), Azure2021Options{MaxDuration: 5 * time.Second})
			if err == nil {
				Collect(w, 0)
				err = w.Err()
			}
			require.ErrorIs(t, err, ErrTrace)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err = OpenAzure2021(strings.NewReader(in), Azure2021Options{From: time.Minute, Until: time.Second})
	assert.ErrorIs(t, err, ErrTrace, "an empty window")

	// Run fails with the stream's error, as ErrWorkload.
	w, err = OpenAzure2021(strings.NewReader("app,func,end_timestamp,duration\na,f,10,1\na,f,x,1\n"), Azure2021Options{})
	require.NoError(t, err)
	_, err = Run(Config{Seed: 1}, w)
	require.ErrorIs(t, err, ErrWorkload)
	require.ErrorIs(t, err, ErrTrace)
	var te *TraceError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 3, te.Line)
}

// TestSampleReplay2021 replays the bundled 2021 sample: each invocation
// runs for the time the trace recorded, so with instant cold starts and
// queueing ruled out the mean latency is the trace's mean duration.
func TestSampleReplay2021(t *testing.T) {
	b, err := fs.ReadFile(Samples(), SampleInvocations2021)
	require.NoError(t, err)
	lines := bytes.Count(b, []byte("\n")) - 1
	var sum time.Duration
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err)
	for _, rec := range recs[1:] {
		d, err := seconds(rec[3])
		require.NoError(t, err)
		sum += time.Duration(max(d, 1))
	}
	w, err := OpenAzure2021(bytes.NewReader(b), Azure2021Options{})
	require.NoError(t, err)
	cfg := instant(1)
	cfg.Default = FunctionSpec{Concurrency: 1000, MinInstances: 1, Load: Const(0), Init: Const(0)}
	r, err := Run(cfg, w)
	require.NoError(t, err)
	assert.EqualValues(t, lines, r.Total.Invocations)
	assert.Equal(t, r.Total.Invocations, r.Total.Completed)
	assert.Len(t, r.Functions, 12)
	// Only the first invocation of each function waits for its instance.
	mean := sum / time.Duration(lines)
	assert.InDelta(t, float64(mean), float64(r.Total.Latency.Mean), float64(10*time.Millisecond))
}

func FuzzLoadDurations(f *testing.F) {
	head := "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n"
	f.Add([]byte(head + "owner0,app0,fn0,100,2,10.0,900.0,10,20,50,100,200,800,900\n"))
	f.Add([]byte(head + "owner0,app0,fn0,1,1,1,1,5,4,1,1,1,1,1\n"))
	f.Add([]byte("\xef\xbb\xbf" + head + "owner0,app0,fn0,1e300,1,1,1,NaN,1,1,1,1,1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := LoadAzureTrace(strings.NewReader(azureCSV(1, [][]int{{1}})), TraceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := tr.LoadDurations(bytes.NewReader(data))
		if err != nil && !errors.Is(err, ErrTrace) {
			t.Fatalf("untyped error %v", err)
		}
		if n > 1 {
			t.Fatalf("set %d of 1 function", n)
		}
		if d := tr.Service[0]; d != nil {
			if v := d.Sample(newRand(1)); v < 0 {
				t.Fatalf("negative sample %v", v)
			}
			if d.Mean() < 0 {
				t.Fatalf("negative mean %v", d.Mean())
			}
		}
	})
}

func FuzzLoadMemory(f *testing.F) {
	head := "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n"
	f.Add([]byte(head + "owner0,app0,10,256,1,1,1,1,1,1,1,1\n"))
	f.Add([]byte(head + "owner0,app0,10,-Inf,1,1,1,1,1,1,1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := LoadAzureTrace(strings.NewReader(azureCSV(1, [][]int{{1}})), TraceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.LoadMemory(bytes.NewReader(data)); err != nil && !errors.Is(err, ErrTrace) {
			t.Fatalf("untyped error %v", err)
		}
		if mb := tr.MemoryMB[0]; mb < 0 || math.IsNaN(mb) || math.IsInf(mb, 0) {
			t.Fatalf("memory %v", mb)
		}
	})
}

func FuzzAzure2021(f *testing.F) {
	f.Add([]byte("app,func,end_timestamp,duration\na,f,10.0,1.0\nb,g,10.5,3.0\n"), int64(0), int64(0))
	f.Add([]byte("app,func,end_timestamp,duration\na,f,100,1\na,f,50,1\n"), int64(time.Second), int64(time.Minute))
	f.Add([]byte("\xef\xbb\xbfapp,func,end_timestamp,duration\na,f,1e18,1e17\n"), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, from, until int64) {
		w, err := OpenAzure2021(bytes.NewReader(data), Azure2021Options{From: time.Duration(from), Until: time.Duration(until), MaxDuration: time.Minute})
		if err != nil {
			if !errors.Is(err, ErrTrace) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		prev := time.Duration(-1)
		for a, ok := w.Next(); ok; a, ok = w.Next() {
			if a.At < prev || a.At < 0 || a.Service <= 0 || a.Function == "" {
				t.Fatalf("bad arrival %+v after %v", a, prev)
			}
			prev = a.At
		}
		if err := w.Err(); err != nil && !errors.Is(err, ErrTrace) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
