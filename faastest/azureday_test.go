package faastest

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// synthDay is a synthetic day of the Azure Functions 2019 invocation-count
// trace, generated as it is read (the file would be 100 MB): rows
// functions whose rates are log-normal (median 0.005 a minute, sigma 2.5,
// at most 600 a minute) on a diurnal curve, counts Poisson per minute.
type synthDay struct {
	r    *rand.Rand
	rows int
	row  int
	buf  []byte
	off  int
}

func newSynthDay(rows int, seed uint64) *synthDay {
	d := &synthDay{r: rand.New(rand.NewPCG(seed, 46)), rows: rows}
	d.buf = append(d.buf, "HashOwner,HashApp,HashFunction,Trigger"...)
	for m := 1; m <= 1440; m++ {
		d.buf = append(d.buf, ',')
		d.buf = strconv.AppendInt(d.buf, int64(m), 10)
	}
	d.buf = append(d.buf, '\n')
	return d
}

func (d *synthDay) Read(p []byte) (int, error) {
	for d.off == len(d.buf) {
		if d.row == d.rows {
			return 0, io.EOF
		}
		d.buf, d.off = d.buf[:0], 0
		rate := math.Min(0.005*math.Exp(2.5*d.r.NormFloat64()), 600)
		d.buf = fmt.Appendf(d.buf, "owner%06d,app%06d,function%06d,http", d.row/7, d.row/3, d.row)
		for m := range 1440 {
			lambda := rate * (1 + 0.6*math.Sin(2*math.Pi*float64(m)/1440-math.Pi/2))
			d.buf = append(d.buf, ',')
			d.buf = strconv.AppendInt(d.buf, int64(poissonCount(d.r, lambda)), 10)
		}
		d.buf = append(d.buf, '\n')
		d.row++
	}
	n := copy(p, d.buf[d.off:])
	d.off += n
	return n, nil
}

// heapPeak samples the heap in use; the caller calls sample at the points
// where it may peak.
type heapPeak struct{ peak uint64 }

func (h *heapPeak) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

// BenchmarkAzureDay is the memory target of the trace loader: a whole
// synthetic day of 46,000 functions × 1,440 minutes loaded and streamed
// to its last arrival in at most 200 MB (the reported peak-heap-MB, the
// heap in use sampled at every minute of the replay; run the test binary
// under /usr/bin/time -v for the peak RSS).
func BenchmarkAzureDay(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var h heapPeak
		tr, err := LoadAzureTrace(newSynthDay(46_000, 1), TraceOptions{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		h.sample()
		w := tr.Workload()
		var n int64
		next := time.Duration(0)
		for a, ok := w.Next(); ok; a, ok = w.Next() {
			if a.At >= next {
				h.sample()
				next += time.Minute
			}
			n++
		}
		if n != tr.Total {
			b.Fatalf("%d arrivals, trace says %d", n, tr.Total)
		}
		b.ReportMetric(float64(h.peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(n), "invocations")
	}
}

// BenchmarkAzureDayRun replays the synthetic day through the simulator,
// sized as a cluster for its functions: trace, functions and report in
// the same 200 MB budget.
func BenchmarkAzureDayRun(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var h heapPeak
		tr, err := LoadAzureTrace(newSynthDay(46_000, 1), TraceOptions{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		w := tr.Workload()
		next := time.Duration(0)
		sampled := WorkloadFunc(func() (Arrival, bool) {
			a, ok := w.Next()
			if ok && a.At >= next {
				h.sample()
				next += 10 * time.Minute
			}
			return a, ok
		})
		cfg := ClusterConfig(len(tr.Functions))
		cfg.Seed = 1
		r, err := Run(cfg, sampled)
		if err != nil {
			b.Fatal(err)
		}
		h.sample()
		b.ReportMetric(float64(h.peak)/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(r.Total.Invocations), "invocations")
		b.ReportMetric(float64(len(r.Decided())), "limits-decided")
	}
}

// TestSynthDayIsATrace keeps the benchmark's generator honest: its rows
// load as a trace, and a tenth of a day of them holds what it should.
func TestSynthDayIsATrace(t *testing.T) {
	tr, err := LoadAzureTrace(newSynthDay(300, 2), TraceOptions{Seed: 1, Minutes: 144})
	require.NoError(t, err)
	require.Len(t, tr.Functions, 300)
	require.Equal(t, 144, tr.Minutes)
	var sum int64
	for i := range tr.Functions {
		for _, c := range tr.Row(i) {
			sum += int64(c)
		}
	}
	require.Equal(t, tr.Total, sum)
	require.Positive(t, sum)
}
