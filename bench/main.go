// Command bench is faasplane's benchmark suite: every comparison measured in
// the same run on the same machine, written to bench/results/*.json with
// SVG plots, and summarized into the generated blocks of BENCHMARKS.md.
//
//	go run ./bench                          # every scenario, under 5 minutes on 2 cores
//	go run ./bench -scenarios hop,coldstart # some of them
//	go run ./bench -quick -md none          # a fast smoke run that leaves BENCHMARKS.md alone
//
// The scenarios: hop (the dataplane's per-request overhead against the
// function directly and against a bare httputil.ReverseProxy chain of the
// same shape), overload (goodput and admitted p99 from 0.5× to 10× of
// measured capacity, shedding on and off), coldstart (warm-pool hit with
// cached code, code not cached, no warm pool), runtimes (Python and Node.js
// hellos hot-loaded and exec'd, the Go hello exec'd, with their floors), lb (the router's policies on
// heterogeneous instances, in a discrete-event model), sharding (rendezvous
// hashing lookups, balance and movement) and hotpath (the in-process
// pick/acquire/release/shed benchmarks, through go test -bench). Only the
// blocks of the scenarios that ran are rewritten.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scenarioNames lists the scenarios in the order they run and appear.
var scenarioNames = []string{"hop", "overload", "coldstart", "runtimes", "lb", "sharding", "hotpath"}

type options struct {
	scenarios []string
	out, md   string // md "none": leave BENCHMARKS.md alone
	root      string // module root ("" = go env GOMOD)
	args      []string
	log       io.Writer

	hop      hopParams
	overload overloadParams
	cold     coldParams
	rt       runtimesParams
	lb       lbParams
	shard    shardParams
	hot      hotParams
}

func defaultOptions() options {
	return options{
		scenarios: scenarioNames,
		hop:       hopParams{Rounds: 16, Slice: 200 * time.Millisecond, Concurrency: []int{1, 16}, Rates: []float64{1000}},
		overload: overloadParams{
			Levels: []float64{0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10}, Step: 2500 * time.Millisecond,
			Sleep: 50 * time.Millisecond, Instances: 2, Concurrency: 4, QueueTimeout: time.Second,
		},
		cold:  coldParams{N: 60},
		rt:    runtimesParams{N: 30},
		lb:    lbParams{Requests: 200_000, Seeds: 5, Loads: []float64{0.7, 0.9, 0.99}},
		shard: shardParams{Count: 5, Benchtime: "100ms", Keys: 1_000_000, Nodes: []int{8, 64, 512}},
		hot:   hotParams{Count: 5, Benchtime: "100ms", Packages: defaultHotPackages},
	}
}

// quick shrinks every scenario to a smoke run of a few seconds each.
func (o *options) quick() {
	o.hop = hopParams{Rounds: 2, Slice: 60 * time.Millisecond, Concurrency: []int{2}, Rates: []float64{200}}
	o.overload.Levels, o.overload.Step = []float64{0.5, 3}, 300*time.Millisecond
	o.overload.Sleep, o.overload.QueueTimeout = 20*time.Millisecond, 300*time.Millisecond
	o.cold.N = 2
	o.rt.N = 2
	o.lb = lbParams{Requests: 3000, Seeds: 2, Loads: []float64{0.7, 0.99}}
	o.shard = shardParams{Count: 1, Benchtime: "1x", Keys: 20_000, Nodes: []int{8, 64}, Bench: "^BenchmarkPick$/^uniform/nodes=8$"}
	o.hot = hotParams{Count: 2, Benchtime: "1x", Packages: []hotPackage{{Dir: "./concurrency", Bench: "^BenchmarkSlotsTryAcquireRelease$"}}}
}

func main() {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	scen := fs.String("scenarios", "all", "comma-separated scenarios to run: "+strings.Join(scenarioNames, ",")+" (or all)")
	quick := fs.Bool("quick", false, "run every scenario at a tiny size (a smoke run; the figures mean little)")
	fs.StringVar(&o.out, "out", "", "directory for results/*.json and the SVG plots (default <module>/bench/results)")
	fs.StringVar(&o.md, "md", "", `BENCHMARKS.md to update ("none": leave it alone; default <module>/BENCHMARKS.md)`)
	hopConc := fs.String("hop-conc", "1,16", "hop: closed-loop client counts")
	hopRate := fs.String("hop-rate", "1000", "hop: open-loop rates, requests/s")
	fs.IntVar(&o.hop.Rounds, "hop-rounds", o.hop.Rounds, "hop: rounds (each runs one slice per target)")
	fs.DurationVar(&o.hop.Slice, "hop-slice", o.hop.Slice, "hop: length of one slice of load on one target")
	shardNodes := fs.String("shard-nodes", "8,64,512", "sharding: node counts for balance and movement (4096 takes 15 s more)")
	levels := fs.String("overload-levels", "0.5,0.75,1,1.25,1.5,2,3,5,10", "overload: offered load, × measured capacity")
	fs.DurationVar(&o.overload.Step, "overload-step", o.overload.Step, "overload: length of each step")
	fs.DurationVar(&o.overload.Sleep, "overload-sleep", o.overload.Sleep, "overload: service time of the sleep function")
	fs.IntVar(&o.overload.Instances, "overload-instances", o.overload.Instances, "overload: fixed instance count")
	fs.IntVar(&o.overload.Concurrency, "overload-concurrency", o.overload.Concurrency, "overload: per-instance concurrency")
	fs.DurationVar(&o.overload.QueueTimeout, "overload-queue-timeout", o.overload.QueueTimeout, "overload: the function's QueueTimeout")
	fs.IntVar(&o.cold.N, "cold-n", o.cold.N, "coldstart: cold starts per case")
	fs.IntVar(&o.rt.N, "rt-n", o.rt.N, "runtimes: cold starts per case")
	fs.IntVar(&o.lb.Requests, "lb-requests", o.lb.Requests, "lb: requests per simulated run")
	fs.IntVar(&o.lb.Seeds, "lb-seeds", o.lb.Seeds, "lb: seeds (runs) per policy and load")
	fs.IntVar(&o.shard.Count, "shard-count", o.shard.Count, "sharding: go test -count")
	fs.StringVar(&o.shard.Benchtime, "shard-benchtime", o.shard.Benchtime, "sharding: go test -benchtime")
	fs.IntVar(&o.shard.Keys, "shard-keys", o.shard.Keys, "sharding: keys for balance and movement")
	fs.IntVar(&o.hot.Count, "hot-count", o.hot.Count, "hotpath: go test -count")
	fs.StringVar(&o.hot.Benchtime, "hot-benchtime", o.hot.Benchtime, "hotpath: go test -benchtime")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench: unexpected arguments:", fs.Args())
		os.Exit(2)
	}
	var err error
	if *quick {
		o.quick()
	}
	if o.scenarios, err = parseScenarios(*scen); err == nil && !*quick {
		o.hop.Concurrency, err = parseInts(*hopConc)
		if err == nil {
			o.hop.Rates, err = parseFloats(*hopRate)
		}
		if err == nil {
			o.overload.Levels, err = parseFloats(*levels)
		}
		if err == nil {
			o.shard.Nodes, err = parseInts(*shardNodes)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "scenarios", "out", "md":
		default:
			o.args = append(o.args, "-"+f.Name+"="+f.Value.String())
		}
	})
	o.log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseScenarios(s string) ([]string, error) {
	if s == "all" || s == "" {
		return scenarioNames, nil
	}
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(scenarioNames, name) {
			return nil, fmt.Errorf("%w %q (want %s)", errNoScenario, name, strings.Join(scenarioNames, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad count %q in %q", f, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// env is what the scenarios share within one run.
type env struct {
	root, tmp, out string
	art            *artifacts
	log            io.Writer
	start          time.Time
	args           []string
	command        string // the current scenario's command

	originOnce sync.Once
	orig       *origin
	origErr    error
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

// origin returns the run's code origin over HTTP on loopback.
func (e *env) origin() *origin {
	e.originOnce.Do(func() { e.orig, e.origErr = newOrigin() })
	if e.origErr != nil {
		panic(e.origErr) // listening on loopback failed: nothing else will work either
	}
	return e.orig
}

func (e *env) commandFor(scenario string) string {
	return strings.Join(append([]string{"go run ./bench -scenarios=" + scenario}, e.args...), " ")
}

// run runs the chosen scenarios, writes their results and plots, and
// updates BENCHMARKS.md. A failing scenario does not stop the others; the
// errors are returned together.
func run(ctx context.Context, o options) error {
	e := &env{log: o.log, start: time.Now(), args: o.args, root: o.root}
	if e.log == nil {
		e.log = io.Discard
	}
	var err error
	if e.root == "" {
		if e.root, err = moduleRoot(ctx); err != nil {
			return err
		}
	}
	e.out = o.out
	if e.out == "" {
		e.out = filepath.Join(e.root, "bench", "results")
	}
	if o.md == "" {
		o.md = filepath.Join(e.root, "BENCHMARKS.md")
	}
	if err := os.MkdirAll(e.out, 0o755); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "faas-bench-*"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)
	e.art = &artifacts{dir: e.tmp}
	defer func() {
		if e.orig != nil {
			e.orig.close()
		}
	}()

	blocks := map[string]string{}
	var errs []error
	for _, name := range o.scenarios {
		e.command = e.commandFor(name)
		e.logf("%s: starting (%s)", name, e.command)
		b, err := runScenario(ctx, e, name, o)
		if err != nil {
			e.logf("%s: FAILED: %v", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		for k, v := range b {
			blocks[k] = v
		}
		e.logf("%s: done", name)
	}
	if len(blocks) > 0 {
		sum, err := summaryMarkdown(e.out)
		if err != nil {
			errs = append(errs, fmt.Errorf("summary: %w", err))
		} else if sum != "" {
			blocks["summary"] = sum
		}
	}
	if o.md != "none" && len(blocks) > 0 {
		if err := updateMarkdown(o.md, blocks); err != nil {
			errs = append(errs, err)
		} else {
			e.logf("updated %s (%d blocks)", o.md, len(blocks))
		}
	}
	return errors.Join(errs...)
}

// runScenario runs one scenario, writes its JSON and plots into e.out and
// returns its BENCHMARKS.md blocks.
func runScenario(ctx context.Context, e *env, name string, o options) (map[string]string, error) {
	rel := func(file string) string { return relLink(o.md, filepath.Join(e.out, file)) }
	switch name {
	case "hop":
		r, err := runHop(ctx, e, o.hop)
		if err != nil {
			return nil, err
		}
		return map[string]string{"hop": hopMarkdown(r)}, writeJSON(e.out, "hop.json", r)
	case "overload":
		r, err := runOverload(ctx, e, o.overload)
		if err != nil {
			return nil, err
		}
		if err := writeSVG(e.out, "overload.svg", overloadChart(r)); err != nil {
			return nil, err
		}
		return map[string]string{"overload": overloadMarkdown(r, rel("overload.svg"))}, writeJSON(e.out, "overload.json", r)
	case "coldstart":
		r, err := runColdStart(ctx, e, o.cold)
		if err != nil {
			return nil, err
		}
		return map[string]string{"coldstart": coldMarkdown(r)}, writeJSON(e.out, "coldstart.json", r)
	case "runtimes":
		r, err := runRuntimes(ctx, e, o.rt)
		if err != nil {
			return nil, err
		}
		if err := writeSVG(e.out, "runtimes.svg", runtimesChart(r)); err != nil {
			return nil, err
		}
		return map[string]string{"runtimes": runtimesMarkdown(r, rel("runtimes.svg"))}, writeJSON(e.out, "runtimes.json", r)
	case "lb":
		r, err := runLB(ctx, e, o.lb)
		if err != nil {
			return nil, err
		}
		if err := writeSVG(e.out, "lb.svg", lbChart(r)); err != nil {
			return nil, err
		}
		return map[string]string{"lb": lbMarkdown(r, rel("lb.svg"))}, writeJSON(e.out, "lb.json", r)
	case "sharding":
		r, err := runSharding(ctx, e, o.shard)
		if err != nil {
			return nil, err
		}
		return map[string]string{"sharding": shardMarkdown(r)}, writeJSON(e.out, "sharding.json", r)
	case "hotpath":
		r, err := runHotPath(ctx, e, o.hot)
		if err != nil {
			return nil, err
		}
		root, others := hotMarkdown(r)
		return map[string]string{"hotpath-root": root, "hotpath": others}, writeJSON(e.out, "hotpath.json", r)
	}
	return nil, fmt.Errorf("%w %q", errNoScenario, name)
}
