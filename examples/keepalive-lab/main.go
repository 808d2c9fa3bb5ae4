// Command keepalive-lab replays the Azure Functions trace samples bundled
// with faastest through keep-alive policies and draws the Pareto plot of
// "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020): the cold
// starts each policy leaves against the memory-time it wastes on idle
// instances. The policies are ordinary concurrency.ScalingPolicy values a
// faas.Dataplane can run: fixed keep-alives from 1 minute to 2 hours
// (concurrency.KeepAlive), the hybrid histogram policy with histogram
// ranges from 1 to 4 hours (concurrency.Hybrid), and Knative's KPA with
// its 10-minute keep-alive (the dataplane's default).
//
//	go run ./examples/keepalive-lab -out examples/keepalive-lab/pareto.svg
//
// prints a table per trace and writes the chart. Every run uses
// faastest.ClusterConfig, a platform sized for the functions, and the
// table says when a limit rather than the policy decided a run.
package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"text/tabwriter"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/faastest"
)

func main() {
	out := flag.String("out", "keepalive-pareto.svg", "where to write the chart")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := run(os.Stdout, f, false); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", *out)
}

// policy is one point of the sweep.
type policy struct {
	series, label string
	scaler        func(faastest.FunctionSpec) (concurrency.ScalingPolicy, error)
}

func policies(quick bool) []policy {
	fixed := []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
	ranges := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour}
	if quick {
		fixed, ranges = []time.Duration{10 * time.Minute}, []time.Duration{4 * time.Hour}
	}
	var ps []policy
	for _, ka := range fixed {
		ps = append(ps, policy{"fixed keep-alive", ka.String(), func(fn faastest.FunctionSpec) (concurrency.ScalingPolicy, error) {
			fn.KeepAlive = ka
			return faastest.KeepAliveFor(fn)
		}})
	}
	for _, r := range ranges {
		ps = append(ps, policy{"hybrid histogram", "range " + r.String(), func(fn faastest.FunctionSpec) (concurrency.ScalingPolicy, error) {
			return concurrency.NewHybrid(concurrency.HybridConfig{Range: r,
				KPA: concurrency.KPAConfig{MinInstances: fn.MinInstances, MaxInstances: fn.MaxInstances}})
		}})
	}
	return append(ps, policy{"KPA (10 min)", "KPA", faastest.KPAFor})
}

// trace is a workload to replay, with the functions' specs.
type trace struct {
	name      string
	short     string // the chart's
	functions []faastest.FunctionSpec
	length    time.Duration
	workload  func() (faastest.Workload, error)
}

func traces(quick bool) ([]trace, error) {
	samples := faastest.Samples()
	open := func(path string) (fs.File, error) { return samples.Open(path) }
	minutes := 0
	if quick {
		minutes = 240
	}
	load := func() (*faastest.Trace, error) {
		inv, err := open(faastest.SampleInvocations2019)
		if err != nil {
			return nil, err
		}
		defer inv.Close()
		t, err := faastest.LoadAzureTrace(inv, faastest.TraceOptions{Seed: 1, Minutes: minutes})
		if err != nil {
			return nil, err
		}
		for path, add := range map[string]func(io.Reader) (int, error){
			faastest.SampleDurations2019: t.LoadDurations,
			faastest.SampleMemory2019:    t.LoadMemory,
		} {
			f, err := open(path)
			if err != nil {
				return nil, err
			}
			_, err = add(f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		return t, nil
	}
	day, err := load()
	if err != nil {
		return nil, err
	}
	return []trace{
		{
			name: "Azure 2019 sample", short: "2019 sample", functions: day.Specs(faastest.FunctionSpec{}),
			length:   time.Duration(day.Minutes) * time.Minute,
			workload: func() (faastest.Workload, error) { return day.Workload(), nil },
		},
		{
			name: "Azure 2021 sample", short: "2021 sample", length: 2 * time.Hour,
			workload: func() (faastest.Workload, error) {
				f, err := open(faastest.SampleInvocations2021)
				if err != nil {
					return nil, err
				}
				// The whole sample is read before Run returns; the
				// embedded file needs no closing.
				return faastest.OpenAzure2021(f, faastest.Azure2021Options{})
			},
		},
	}, nil
}

// run replays every trace through every policy, prints the tables to w
// and writes the chart to svg.
func run(w io.Writer, svg io.Writer, quick bool) error {
	ts, err := traces(quick)
	if err != nil {
		return err
	}
	var panels []faastest.ParetoPanel
	for _, t := range ts {
		panel := faastest.ParetoPanel{Title: t.short}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "%s (%v):\n", t.name, t.length)
		fmt.Fprintln(tw, "policy\tcold starts\tcold p75\tidle GB-s\tvs 10 min\tdecided by\t")
		var rows []faastest.ParetoPoint
		for _, p := range policies(quick) {
			cfg := faastest.ClusterConfig(max(len(t.functions), 100))
			cfg.Name, cfg.Seed, cfg.Functions, cfg.Scaler, cfg.Until = p.label, 1, t.functions, p.scaler, t.length
			wl, err := t.workload()
			if err != nil {
				return err
			}
			r, err := faastest.Run(cfg, wl)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", t.name, p.label, err)
			}
			pt := faastest.Pareto(p.series, p.label, r)
			rows = append(rows, pt)
			if p.label == (10 * time.Minute).String() {
				panel.Reference = pt.IdleGBSeconds
			}
		}
		for _, pt := range rows {
			decided := "policy"
			if len(pt.Decided) > 0 {
				decided = fmt.Sprint(pt.Decided)
			}
			fmt.Fprintf(tw, "%s %s\t%.2f%%\t%.1f%%\t%.0f\t%.0f%%\t%s\t\n", pt.Series, pt.Label,
				100*pt.ColdStartRatio, 100*pt.ColdStartP75, pt.IdleGBSeconds, 100*pt.IdleGBSeconds/panel.Reference, decided)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		panel.Points = rows
		panels = append(panels, panel)
	}
	return faastest.WritePareto(svg, "Keep-alive policies: cold starts against wasted memory-time", panels)
}
