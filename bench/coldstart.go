package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// Cold start: one real Dataplane with pods/local agents and two warm pools:
// "go" keeps 2 idle agents, "go-nopool" keeps none (its sizing policy
// always answers 0, so every take waits for an agent created on demand).
// Each cold start deploys a new function ID, sends it one request through
// the gateway, records the coldstart.Report the Dataplane passes to
// Config.ColdStart.OnColdStart, and removes the function (its pod is
// deleted). Before each one the pools are left to settle: the warm pool
// full, no creation in flight. The three cases alternate.

type coldParams struct {
	N int `json:"n"`
}

// coldSample is one cold start, in milliseconds.
type coldSample struct {
	Function string  `json:"function"`
	Queue    float64 `json:"queue_ms"`
	Take     float64 `json:"take_ms"`
	Fetch    float64 `json:"fetch_ms"`
	Load     float64 `json:"load_ms"`
	Init     float64 `json:"init_ms"`
	Total    float64 `json:"total_ms"`
	// Client is the first request's latency as the client saw it: the
	// cold start plus the gateway, the agent and the function.
	Client   float64 `json:"client_ms"`
	CacheHit bool    `json:"cache_hit"`
}

// coldStep summarizes one step of the breakdown over a case's samples.
type coldStep struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type coldCase struct {
	Name      string              `json:"name"`
	What      string              `json:"what"`
	Samples   []coldSample        `json:"samples"`
	Steps     map[string]coldStep `json:"steps"` // take, fetch, load, init, total, client
	CacheHits int                 `json:"cache_hits"`
	Failed    int                 `json:"failed"`
}

type coldResult struct {
	Meta   Meta       `json:"meta"`
	Params coldParams `json:"params"`
	Cases  []coldCase `json:"cases"`
}

// gatedProvider holds back the creation of pods of one runtime while
// closed: the refill of the warm pool then waits until the cold start being
// measured is over, instead of competing with it for the machine's cores.
type gatedProvider struct {
	*local.Provider
	runtime string
	mu      sync.Mutex
	gate    chan struct{} // closed: open
}

func newGatedProvider(p *local.Provider, runtime string) *gatedProvider {
	g := &gatedProvider{Provider: p, runtime: runtime, gate: make(chan struct{})}
	close(g.gate)
	return g
}

func (g *gatedProvider) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if spec.Runtime == g.runtime {
		select {
		case <-gate:
		case <-ctx.Done():
			return warmpool.Pod{}, ctx.Err()
		}
	}
	return g.Provider.Create(ctx, spec)
}

// hold closes the gate; the returned func opens it again.
func (g *gatedProvider) hold() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.gate = ch
	g.mu.Unlock()
	return func() { close(ch) }
}

// zeroSizing keeps a pool empty: every take creates a pod on demand.
type zeroSizing struct{}

func (zeroSizing) ObserveTake(time.Time)                  {}
func (zeroSizing) ObserveCreate(time.Time, time.Duration) {}
func (zeroSizing) Target(time.Time) int                   { return 0 }

const warmIdle = 2

func runColdStart(ctx context.Context, e *env, p coldParams) (*coldResult, error) {
	res := &coldResult{Meta: newMeta("coldstart", e.command), Params: p}
	if err := e.art.build(ctx); err != nil {
		return nil, err
	}
	reports := make(chan coldstart.Report, 1024)
	var gated *gatedProvider
	pl, err := startPlaneWrapped(ctx, e.art, filepath.Join(e.tmp, "coldstart"), faas.Config{
		Pool: warmpool.Config{
			Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: warmIdle, Max: warmIdle}, "go-nopool": {Min: 0, Max: 1}},
			Sizing: func(runtime string, rc warmpool.RuntimeConfig) (warmpool.SizingPolicy, error) {
				if runtime == "go-nopool" {
					return zeroSizing{}, nil
				}
				return warmpool.NewEWMASizing(warmpool.EWMASizingConfig{Min: rc.Min, Max: rc.Max})
			},
		},
		Observer: coldStartObserver(func(r coldstart.Report) {
			select {
			case reports <- r:
			default: // never: one cold start at a time
			}
		}),
		NodeID: "bench-coldstart",
	}, func(p *local.Provider) warmpool.PodProvider {
		gated = newGatedProvider(p, "go")
		return gated
	})
	if err != nil {
		return nil, err
	}
	defer pl.close()

	cached := e.origin().put("hello-cached.tar.gz", e.art.helloPkg)
	cases := []struct {
		coldCase
		runtime string
		hold    bool // defer the pool's refill until the cold start is over
		ref     func(i int) (code.Ref, error)
	}{
		{coldCase: coldCase{Name: "warm-pool hit, code cached", What: "an idle agent from the pool; the package already unpacked in the node's cache; " +
			"the pool starts its refill (a new agent process) at the take, on the same cores, as it does in production"},
			runtime: "go", ref: func(int) (code.Ref, error) { return cached, nil }},
		{coldCase: coldCase{Name: "warm-pool hit, code cached, refill deferred", What: "as the first case, but the bench holds the pool's refill back until the request has its answer: " +
			"the cold start alone, without a process creation competing for the 2 cores (a diagnostic, not a configuration)"},
			runtime: "go", hold: true, ref: func(int) (code.Ref, error) { return cached, nil }},
		{coldCase: coldCase{Name: "warm-pool hit, code not cached", What: "an idle agent; a package the node has never seen, fetched from the origin over HTTP on loopback, verified and unpacked"},
			runtime: "go", ref: func(i int) (code.Ref, error) {
				b, err := variant(e.art.helloPrefix, "hello", strconv.Itoa(i))
				if err != nil {
					return code.Ref{}, err
				}
				name := fmt.Sprintf("hello-%d.tar.gz", i)
				return e.origin().put(name, e.art.helloPrefix, b[len(e.art.helloPrefix):]), nil
			}},
		{coldCase: coldCase{Name: "no warm pool, code cached", What: "the agent process started on demand (pool target 0), then load and init as in the first case"},
			runtime: "go-nopool", ref: func(int) (code.Ref, error) { return cached, nil }},
	}
	client := newTarget("gateway", pl.url+"/", nil, time.Minute)
	defer client.close()

	one := func(id, runtime string, ref code.Ref, hold bool) (coldSample, error) {
		if err := settle(ctx, pl); err != nil {
			return coldSample{}, err
		}
		release := func() {}
		if hold {
			release = sync.OnceFunc(gated.hold())
		}
		defer release() // on the error paths; a no-op once released
		if err := pl.dp.Deploy(ctx, faas.FunctionSpec{ID: id, Runtime: runtime, Code: ref, MaxInstances: 1, KeepAlive: time.Hour}); err != nil {
			return coldSample{}, err
		}
		defer func() { _ = pl.dp.Remove(context.WithoutCancel(ctx), id) }()
		client.header = http.Header{lifecycle.HeaderFunctionID: {id}}
		start := time.Now()
		status, code := client.call(ctx)
		took := time.Since(start)
		release()
		if status != http.StatusOK {
			return coldSample{}, fmt.Errorf("cold start of %s: status %d %s", id, status, code)
		}
		select {
		case r := <-reports:
			if r.FunctionID != id {
				return coldSample{}, fmt.Errorf("cold start report of %s while waiting for %s", r.FunctionID, id)
			}
			if r.Err != nil {
				return coldSample{}, fmt.Errorf("cold start of %s: %w", id, r.Err)
			}
			b := r.Breakdown
			return coldSample{Function: id, Queue: ms(b.Queue), Take: ms(b.Take), Fetch: ms(b.Fetch), Load: ms(b.Load),
				Init: ms(b.Init), Total: ms(b.Total), Client: ms(took), CacheHit: b.CacheHit}, nil
		case <-time.After(10 * time.Second):
			return coldSample{}, fmt.Errorf("no cold-start report for %s", id)
		case <-ctx.Done():
			return coldSample{}, ctx.Err()
		}
	}

	// Warm-up, not recorded: the cached package reaches the node's cache,
	// and each runtime serves once.
	for _, c := range []int{0, 3} {
		if _, err := one(fmt.Sprintf("warmup-%d", c), cases[c].runtime, cached, false); err != nil {
			return nil, err
		}
	}
	for i := range p.N {
		for j := range cases {
			c := &cases[(i+j)%len(cases)]
			ref, err := c.ref(i)
			if err != nil {
				return nil, err
			}
			s, err := one(fmt.Sprintf("cs-%d-%d", (i+j)%len(cases), i), c.runtime, ref, c.hold)
			if err != nil {
				c.Failed++
				e.logf("coldstart: %s: %v", c.Name, err)
				if c.Failed > max(3, p.N/10) {
					return nil, err
				}
				continue
			}
			c.Samples = append(c.Samples, s)
			if s.CacheHit {
				c.CacheHits++
			}
		}
		if (i+1)%10 == 0 {
			e.logf("coldstart: %d of %d rounds", i+1, p.N)
		}
	}
	for _, c := range cases {
		c.Steps = map[string]coldStep{}
		for name, get := range map[string]func(coldSample) float64{
			"take": func(s coldSample) float64 { return s.Take }, "fetch": func(s coldSample) float64 { return s.Fetch },
			"load": func(s coldSample) float64 { return s.Load }, "init": func(s coldSample) float64 { return s.Init },
			"total": func(s coldSample) float64 { return s.Total }, "client": func(s coldSample) float64 { return s.Client },
		} {
			xs := make([]float64, len(c.Samples))
			for i, s := range c.Samples {
				xs[i] = get(s)
			}
			c.Steps[name] = stepOf(xs)
		}
		e.logf("coldstart: %s: total p50 %.1f ms p99 %.1f ms (take %.1f, fetch %.1f, load %.1f, init %.1f)", c.Name,
			c.Steps["total"].P50, c.Steps["total"].P99, c.Steps["take"].P50, c.Steps["fetch"].P50, c.Steps["load"].P50, c.Steps["init"].P50)
		res.Cases = append(res.Cases, c.coldCase)
	}
	res.Meta.finish()
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func stepOf(xs []float64) coldStep {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	return coldStep{P50: quantile(s, .5), P90: quantile(s, .9), P99: quantile(s, .99), Max: quantile(s, 1)}
}

// settle waits until the warm pool is full and no pod is being created.
func settle(ctx context.Context, pl *plane) error {
	return waitFor(ctx, 30*time.Second, func() bool {
		rs := pl.dp.Stats().Pool.Runtimes
		w, n := rs["go"], rs["go-nopool"]
		return w.Idle >= warmIdle && w.Creating == 0 && w.Waiting == 0 && n.Creating == 0 && n.Idle == 0
	}, func() error {
		return fmt.Errorf("pools did not settle within 30 s: %+v", pl.dp.Stats().Pool.Runtimes)
	})
}

func coldMarkdown(r *coldResult) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("%d cold starts per case, the cases alternating; each a new function ID, removed after its first request", r.Params.N)))
	b.WriteString("\n")
	var rows [][]string
	for _, c := range r.Cases {
		st := c.Steps
		pair := func(k string) string { return fmtMS(st[k].P50) + " / " + fmtMS(st[k].P99) }
		rows = append(rows, []string{c.Name, strconv.Itoa(len(c.Samples)), pair("take"), pair("fetch"), pair("load"), pair("init"),
			"**" + pair("total") + "**", pair("client"), fmt.Sprintf("%d/%d", c.CacheHits, len(c.Samples))})
	}
	b.WriteString(table([]string{"case", "n", "take", "fetch", "load (incl. fetch)", "init", "total", "first request, client", "cache hits"}, "lrrrrrrrr", rows))
	rank := int(math.Ceil(0.99 * float64(r.Params.N)))
	fmt.Fprintf(&b, "\nAll times in ms, p50 / p99; quantiles by nearest rank, so the p99 is the sample of rank %d of %d%s. ",
		rank, r.Params.N, map[bool]string{true: ", the largest", false: ""}[rank >= r.Params.N])
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "*%s*: %s. ", c.Name, c.What)
	}
	ok := func(v bool) string {
		if v {
			return "✔"
		}
		return "✘"
	}
	for i, c := range r.Cases {
		if i > 1 {
			break
		}
		t := c.Steps["total"]
		fmt.Fprintf(&b, "\n\nTarget (issue 7), warm-pool hit with cached code, total — *%s*: p50 ≤ 15 ms %s (%s), p99 ≤ 50 ms %s (%s).",
			c.Name, ok(t.P50 <= 15), fmtMS(t.P50), ok(t.P99 <= 50), fmtMS(t.P99))
	}
	b.WriteString("\n")
	return b.String()
}

// coldStartObserver is a faas.Observer of cold starts only.
type coldStartObserver func(coldstart.Report)

func (f coldStartObserver) ObserveRequest(faas.RequestRecord)                         {}
func (f coldStartObserver) ObserveColdStart(r coldstart.Report)                       { f(r) }
func (f coldStartObserver) ObserveInstance(*lifecycle.Instance, lifecycle.Transition) {}
func (f coldStartObserver) ObserveRoute(router.Event)                                 {}
