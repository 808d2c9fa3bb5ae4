package faastest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/warmpool"
)

// Three functions for an hour: a busy API, a batch job that bursts for two
// minutes every half hour, and a timer every 15 minutes; every decision
// taken by the default policies (P2C, KPA with a 10-minute keep-alive, the
// adaptive shedder, EWMA pool sizing).
func Example() {
	w := faastest.Merge(
		faastest.Poisson("api", 20, time.Hour, 1),
		faastest.OnOff("batch", 50, 0, 2*time.Minute, 28*time.Minute, time.Hour, 2),
		faastest.Periodic("cron", 15*time.Minute, time.Minute, time.Hour),
	)
	r, err := faastest.Run(faastest.Config{Name: "defaults", Seed: 1}, w)
	if err != nil {
		panic(err)
	}
	for _, f := range r.Functions {
		fmt.Printf("%-5s %6d invocations, %3d cold, p99 %v, %4.0f instance-seconds\n",
			f.ID, f.Invocations, f.ColdInvocations, f.Latency.P99.Round(time.Millisecond), f.InstanceSeconds)
	}
	fmt.Printf("total: cold-start ratio %.3f%%, %d cold starts\n", 100*r.Total.ColdStartRatio, r.Total.ColdStarts)
	// Output:
	// api    72043 invocations,  24 cold, p99 459ms, 3607 instance-seconds
	// batch  11887 invocations,  74 cold, p99 514ms, 1557 instance-seconds
	// cron       4 invocations,   4 cold, p99 374ms, 2408 instance-seconds
	// total: cold-start ratio 0.122%, 78 cold starts
}

// A comparison of two keep-alives on a sparse workload: each function is
// called every 12 minutes, so a 10-minute keep-alive makes every call cold
// while a 15-minute one keeps the instances, at a cost in idle time.
func ExampleCompare() {
	workload := func() faastest.Workload {
		var ws []faastest.Workload
		for i := range 10 {
			ws = append(ws, faastest.Periodic(fmt.Sprintf("f%d", i), 12*time.Minute, time.Duration(i)*time.Minute, 2*time.Hour))
		}
		return faastest.Merge(ws...)
	}
	short := faastest.Config{Name: "10 min", Seed: 1, Until: 2 * time.Hour}
	long := short
	long.Name, long.Default.KeepAlive = "15 min", 15*time.Minute
	c, err := faastest.Compare(short, long, workload)
	if err != nil {
		panic(err)
	}
	fmt.Printf("cold-start ratio: %.0f%% vs %.0f%%\n", 100*c.A.Total.ColdStartRatio, 100*c.B.Total.ColdStartRatio)
	fmt.Printf("instance-hours:   %.1f vs %.1f\n", c.A.Total.InstanceSeconds/3600, c.B.Total.InstanceSeconds/3600)
	// Output:
	// cold-start ratio: 100% vs 10%
	// instance-hours:   16.3 vs 19.2
}

// A report as a text table, with the two busiest functions.
func ExampleReport_WriteText() {
	w := faastest.Merge(faastest.Poisson("a", 10, time.Minute, 1), faastest.Poisson("b", 1, time.Minute, 2))
	r, err := faastest.Run(faastest.Config{Name: "small", Seed: 1, NoShedding: true}, w)
	if err != nil {
		panic(err)
	}
	var b strings.Builder
	if err := r.WriteText(&b, 2); err != nil {
		panic(err)
	}
	fmt.Println(strings.Split(b.String(), "\n")[0])
	// Output:
	// run "small" (seed 1, policy p2c): 2 functions, 59.879s virtual, 1445 events
}

// Replaying the Azure Functions 2019 trace: the file is the dataset's
// invocations_per_function_md.anon.dNN.csv; here a two-function excerpt.
func ExampleLoadAzureTrace() {
	csv := "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n" +
		"o1,app1,fn1,http,5,0,2\n" +
		"o2,app2,fn2,timer,1,1,1\n"
	tr, err := faastest.LoadAzureTrace(strings.NewReader(csv), faastest.TraceOptions{Seed: 1})
	if err != nil {
		panic(err)
	}
	r, err := faastest.Run(faastest.Config{Seed: 1}, tr.Workload())
	if err != nil {
		panic(err)
	}
	fmt.Println(tr.Functions, tr.Total, r.Total.Completed)
	// Output:
	// [app1/fn1 app2/fn2] 10 10
}

// The fake pod provider in a unit test of the warm-pool manager: pods
// take two seconds of fake time to create.
func ExamplePodProvider() {
	clk := faastest.NewClock(time.Time{})
	pods := faastest.NewPodProvider(faastest.PodProviderConfig{Nodes: []string{"n1", "n2"}, Latency: faastest.Const(2 * time.Second), Clock: clk})
	ctx := context.Background()
	done := make(chan warmpool.Pod)
	go func() {
		pod, err := pods.Create(ctx, warmpool.PodSpec{Name: "p1", Runtime: "go"})
		if err != nil {
			panic(err)
		}
		done <- pod
	}()
	_ = clk.BlockUntil(ctx, 1) // the creation waits on the clock
	clk.Advance(2 * time.Second)
	pod := <-done
	fmt.Println(pod.ID, pod.Node, pod.Created.Sub(faastest.Epoch))
	// Output:
	// p1 n1 2s
}

// The timeline as SVG, for people who would rather look than read.
func ExampleReport_WriteSVG() {
	r, err := faastest.Run(faastest.Config{Seed: 1}, faastest.OnOff("f", 30, 1, time.Minute, 4*time.Minute, 20*time.Minute, 1))
	if err != nil {
		panic(err)
	}
	f, err := os.CreateTemp("", "timeline-*.svg")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := r.WriteSVG(f); err != nil {
		panic(err)
	}
	fmt.Println("written")
	// Output:
	// written
}

// The bundled sample of the Azure Functions 2019 trace, with its
// execution times and memory, replayed for four hours through the
// hybrid histogram policy on a platform sized for its functions.
func ExampleSamples() {
	open := func(path string) io.Reader {
		f, err := faastest.Samples().Open(path)
		if err != nil {
			panic(err)
		}
		return f
	}
	tr, err := faastest.LoadAzureTrace(open(faastest.SampleInvocations2019), faastest.TraceOptions{Seed: 1, Minutes: 240})
	if err != nil {
		panic(err)
	}
	if _, err := tr.LoadDurations(open(faastest.SampleDurations2019)); err != nil {
		panic(err)
	}
	if _, err := tr.LoadMemory(open(faastest.SampleMemory2019)); err != nil {
		panic(err)
	}
	cfg := faastest.ClusterConfig(len(tr.Functions))
	cfg.Seed, cfg.Functions, cfg.Scaler, cfg.Until = 1, tr.Specs(faastest.FunctionSpec{}), faastest.HybridFor, 4*time.Hour
	r, err := faastest.Run(cfg, tr.Workload())
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d functions, %d invocations, %d cold, %.0f idle GB-seconds; limits that decided: %d\n",
		len(r.Functions), r.Total.Invocations, r.Total.ColdInvocations, r.Total.IdleGBSeconds, len(r.Decided()))
	// Output:
	// 40 functions, 15682 invocations, 65 cold, 74827 idle GB-seconds; limits that decided: 0
}
