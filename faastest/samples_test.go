package faastest

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the bundled sample traces")

// TestSamplesAreGenerated keeps the bundled samples equal to what
// generateSamples writes: go test -run TestSamplesAreGenerated -update
// rewrites them.
func TestSamplesAreGenerated(t *testing.T) {
	want := generateSamples()
	require.Len(t, want, 4)
	for path, content := range want {
		if *update {
			require.NoError(t, os.WriteFile(path, content, 0o644))
			continue // the embedded copies are the old ones until the next build
		}
		got, err := fs.ReadFile(Samples(), path)
		require.NoError(t, err, path)
		require.True(t, bytes.Equal(content, got), "%s differs from its generator (go test -run TestSamplesAreGenerated -update)", path)
	}
}

func hash16(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// sampleFunction is one function of the 2019 sample and how it is called.
type sampleFunction struct {
	owner, app, fn, trigger string
	perMinute               func(r *rand.Rand, minute int) int
}

// poissonCount draws a Poisson count of mean lambda (Knuth's method; the
// sample's means are small).
func poissonCount(r *rand.Rand, lambda float64) int {
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func sampleFunctions(r *rand.Rand) []sampleFunction {
	var fns []sampleFunction
	add := func(app int, trigger string, f func(r *rand.Rand, minute int) int) {
		i := len(fns)
		fns = append(fns, sampleFunction{
			owner: hash16(fmt.Sprintf("owner-%d", app%5)), app: hash16(fmt.Sprintf("app-%d", app)),
			fn: hash16(fmt.Sprintf("function-%d", i)), trigger: trigger, perMinute: f,
		})
	}
	for k, period := range []int{5, 10, 15, 20, 30, 45, 60, 120} {
		phase := r.IntN(period)
		add(k%3, "timer", func(_ *rand.Rand, m int) int {
			if (m-phase)%period == 0 && m >= phase {
				return 1
			}
			return 0
		})
	}
	for k := range 12 {
		lambda := math.Exp(math.Log(0.01) + float64(k)/11*math.Log(3000)) // 0.01 to 30 a minute
		add(3+k%3, []string{"http", "queue", "event"}[k%3], func(r *rand.Rand, _ int) int { return poissonCount(r, lambda) })
	}
	for k := range 6 {
		every, length, start := 120+30*k, 10+2*k, r.IntN(120)
		add(6, "event", func(r *rand.Rand, m int) int {
			if m >= start && (m-start)%every < length {
				return poissonCount(r, 5)
			}
			return 0
		})
	}
	for k := range 6 {
		base := 0.05 * math.Pow(3, float64(k))
		add(7+k%2, "http", func(r *rand.Rand, m int) int {
			return poissonCount(r, base*(1+0.9*math.Sin(2*math.Pi*float64(m)/1440-math.Pi/2)))
		})
	}
	for k := range 4 {
		calls := map[int]bool{}
		for range 1 + k%3 {
			calls[r.IntN(1440)] = true
		}
		add(9, "http", func(_ *rand.Rand, m int) int {
			if calls[m] {
				return 1
			}
			return 0
		})
	}
	for k := range 4 {
		mean, next := float64(30+20*k), 0
		add(10+k%2, "storage", func(r *rand.Rand, m int) int {
			if m < next {
				return 0
			}
			next = m + 1 + int(r.ExpFloat64()*mean)
			return 1
		})
	}
	return fns
}

// generateSamples writes the bundled samples, deterministically.
func generateSamples() map[string][]byte {
	r := rand.New(rand.NewPCG(2019, 1))
	fns := sampleFunctions(r)
	out := map[string][]byte{}

	var inv bytes.Buffer
	inv.WriteString("HashOwner,HashApp,HashFunction,Trigger")
	for m := 1; m <= 1440; m++ {
		fmt.Fprintf(&inv, ",%d", m)
	}
	inv.WriteString("\n")
	totals := make([]int, len(fns))
	for i, f := range fns {
		fmt.Fprintf(&inv, "%s,%s,%s,%s", f.owner, f.app, f.fn, f.trigger)
		for m := range 1440 {
			n := f.perMinute(r, m)
			totals[i] += n
			inv.WriteString("," + strconv.Itoa(n))
		}
		inv.WriteString("\n")
	}
	out[SampleInvocations2019] = inv.Bytes()

	var dur bytes.Buffer
	dur.WriteString("HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n")
	for i, f := range fns {
		median := 200 * math.Exp(r.NormFloat64()) // ms
		ms := func(k float64) int { return max(1, int(math.Round(median*k))) }
		fmt.Fprintf(&dur, "%s,%s,%s,%d,%d,%d.0,%d.0,%d,%d,%d,%d,%d,%d,%d\n", f.owner, f.app, f.fn,
			ms(1.3), totals[i], ms(0.2), ms(8), ms(0.2), ms(0.3), ms(0.7), ms(1), ms(1.5), ms(4), ms(8))
	}
	out[SampleDurations2019] = dur.Bytes()

	var mem bytes.Buffer
	mem.WriteString("\xef\xbb\xbf") // a byte order mark, as spreadsheets write
	mem.WriteString("HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n")
	seen := map[string]bool{}
	for _, f := range fns {
		if seen[f.app] {
			continue
		}
		seen[f.app] = true
		avg := 80 + r.Float64()*320
		fmt.Fprintf(&mem, "%s,%s,%d,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f\n", f.owner, f.app, 100+r.IntN(1000),
			avg, 0.6*avg, 0.7*avg, 0.9*avg, avg, 1.1*avg, 1.3*avg, 1.5*avg, 1.8*avg)
	}
	out[SampleMemory2019] = mem.Bytes()

	out[SampleInvocations2021] = generate2021(rand.New(rand.NewPCG(2021, 1)))
	return out
}

// generate2021 writes two hours of 12 functions, one line per invocation
// ordered by its end, as the 2021 trace is.
func generate2021(r *rand.Rand) []byte {
	type inv struct {
		app, fn    string
		start, dur float64
	}
	var invs []inv
	const horizon = 2 * 3600.0
	for k := range 12 {
		app, fn := hash16(fmt.Sprintf("app2021-%d", k/3)), hash16(fmt.Sprintf("function2021-%d", k))
		median := 0.05 * math.Exp(1.2*r.NormFloat64())
		dur := func() float64 { return math.Round(median*math.Exp(0.5*r.NormFloat64())*1000) / 1000 }
		switch {
		case k < 4: // timers every 1, 5, 15 and 30 minutes
			period := []float64{60, 300, 900, 1800}[k]
			for t := r.Float64() * period; t < horizon; t += period {
				invs = append(invs, inv{app, fn, t, dur()})
			}
		default: // Poisson, from one in 10 minutes to one every 10 s
			rate := math.Exp(math.Log(1.0/600) + float64(k-4)/7*math.Log(60))
			for t := r.ExpFloat64() / rate; t < horizon; t += r.ExpFloat64() / rate {
				invs = append(invs, inv{app, fn, t, dur()})
			}
		}
	}
	slices.SortStableFunc(invs, func(a, b inv) int { return cmp.Compare(a.start+a.dur, b.start+b.dur) })
	var b bytes.Buffer
	b.WriteString("app,func,end_timestamp,duration\n")
	for _, x := range invs {
		fmt.Fprintf(&b, "%s,%s,%s,%s\n", x.app, x.fn, strconv.FormatFloat(x.start+x.dur, 'f', 3, 64), strconv.FormatFloat(x.dur, 'f', 3, 64))
	}
	return b.Bytes()
}

// sample2019 loads the three 2019 samples.
func sample2019(t testing.TB, opts TraceOptions) *Trace {
	t.Helper()
	open := func(path string) *bytes.Reader {
		b, err := fs.ReadFile(Samples(), path)
		require.NoError(t, err)
		return bytes.NewReader(b)
	}
	tr, err := LoadAzureTrace(open(SampleInvocations2019), opts)
	require.NoError(t, err)
	n, err := tr.LoadDurations(open(SampleDurations2019))
	require.NoError(t, err)
	require.Equal(t, len(tr.Functions), n, "every function has its durations")
	n, err = tr.LoadMemory(open(SampleMemory2019))
	require.NoError(t, err)
	require.Equal(t, len(tr.Functions), n, "every function has its memory")
	return tr
}
