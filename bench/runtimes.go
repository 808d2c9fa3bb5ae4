package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/internal/svgplot"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/runtimes"
	"github.com/faasplane/faas/warmpool"
)

// Runtimes: the cold start of the same Python hello (examples/functions/
// hello-py) hot-loaded into a warm pod's running bootstrap and exec'd (a
// bootstrap started for the load), the same for the Node.js hello, and the
// Go hello exec'd, through one real Dataplane with pods/local agents: five
// warm pools ("python", "python-exec", "node", "node-exec", "go") of two
// idle agents each. Each cold start deploys a new function ID (the package
// is in the node's cache after the warm-up), sends one request through the
// gateway and records the coldstart.Report. The pools' refills are held
// back until the request has its answer, so that no agent or interpreter
// start competes with the measured cold start for the 2 cores (in every
// case alike). In the same run, interleaved, each floor: the interpreter
// (python3, node) or binary (the Go hello) started directly until it
// listens, polled as the agent polls.

type runtimesParams struct {
	N int `json:"n"`
}

// rtCase is one runtime and mode.
type rtCase struct {
	Name    string              `json:"name"`
	Runtime string              `json:"runtime"` // the pool
	Lang    string              `json:"lang"`
	HotLoad bool                `json:"hot_load"`
	Samples []coldSample        `json:"samples"`
	Steps   map[string]coldStep `json:"steps"`
	Failed  int                 `json:"failed"`
}

// rtFloor is a process start until it listens, in milliseconds.
type rtFloor struct {
	Name    string    `json:"name"`
	What    string    `json:"what"`
	Samples []float64 `json:"samples_ms"`
	Step    coldStep  `json:"step"`
}

type runtimesResult struct {
	Meta   Meta           `json:"meta"`
	Params runtimesParams `json:"params"`
	Cases  []rtCase       `json:"cases"`
	Floors []rtFloor      `json:"floors"`
}

// heldProvider holds back the creation of pods while held.
type heldProvider struct {
	*local.Provider
	mu   sync.Mutex
	gate chan struct{} // closed: open
}

func (g *heldProvider) Create(ctx context.Context, spec warmpool.PodSpec) (warmpool.Pod, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return warmpool.Pod{}, ctx.Err()
	}
	return g.Provider.Create(ctx, spec)
}

func (g *heldProvider) hold() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.gate = ch
	g.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

var rtPools = []string{"python", "python-exec", "node", "node-exec", "go"}

const rtIdle = 2

func runRuntimes(ctx context.Context, e *env, p runtimesParams) (*runtimesResult, error) {
	res := &runtimesResult{Meta: newMeta("runtimes", e.command), Params: p}
	if err := e.art.build(ctx); err != nil {
		return nil, err
	}
	py, err := installRuntime(ctx, e, "python")
	if err != nil {
		return nil, err
	}
	node, err := installRuntime(ctx, e, "node")
	if err != nil {
		return nil, err
	}
	pkgs := map[string]code.Ref{"go": e.origin().put("rt-hello.tar.gz", e.art.helloPkg)}
	for lang, dir := range map[string]string{"python": "hello-py", "node": "hello-node"} {
		b, err := code.PackDir(filepath.Join(e.root, "examples", "functions", dir))
		if err != nil {
			return nil, err
		}
		pkgs[lang] = e.origin().put("rt-"+dir+".tar.gz", b)
	}

	reports := make(chan coldstart.Report, 16)
	pl, held, err := startRuntimesPlane(ctx, e, reports)
	if err != nil {
		return nil, err
	}
	defer pl.close()

	cases := []rtCase{
		{Name: "Python, hot load", Runtime: "python", Lang: "python", HotLoad: true},
		{Name: "Python, exec", Runtime: "python-exec", Lang: "python"},
		{Name: "Node.js, hot load", Runtime: "node", Lang: "node", HotLoad: true},
		{Name: "Node.js, exec", Runtime: "node-exec", Lang: "node"},
		{Name: "Go, exec", Runtime: "go", Lang: "go"},
	}
	floors := []rtFloor{
		{Name: "python3 listens", What: "the Python interpreter running a script that binds PORT: what an exec of a Python function cannot go below"},
		{Name: "node listens", What: "Node.js running a script that listens on PORT"},
		{Name: "Go hello listens", What: "the Go hello binary started with PORT until it accepts a connection: the Go exec floor"},
	}
	// The floors' programs are files, as the bootstraps are (node -e
	// costs more than a script).
	pyFloor, nodeFloor := filepath.Join(e.tmp, "floor.py"), filepath.Join(e.tmp, "floor.js")
	if err := os.WriteFile(pyFloor, []byte("import os, socket, time\ns = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\ntime.sleep(60)\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(nodeFloor, []byte("require('net').createServer().listen(+process.env.PORT, '127.0.0.1');\n"), 0o644); err != nil {
		return nil, err
	}
	floorCmds := [][]string{{py.Path, "-u", pyFloor}, {node.Path, nodeFloor}, {e.art.hello}}
	client := newTarget("gateway", pl.url+"/", nil, time.Minute)
	defer client.close()

	one := func(id string, c *rtCase) (coldSample, error) {
		if err := settleRuntimes(ctx, pl); err != nil {
			return coldSample{}, err
		}
		release := held.hold()
		defer release()
		spec := faas.FunctionSpec{ID: id, Runtime: c.Runtime, Code: pkgs[c.Lang], MaxInstances: 1, KeepAlive: time.Hour}
		if err := pl.dp.Deploy(ctx, spec); err != nil {
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
			if r.FunctionID != id || r.Err != nil {
				return coldSample{}, fmt.Errorf("cold start report of %s for %s: %v", r.FunctionID, id, r.Err)
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

	// Warm-up, not recorded: the packages reach the node's cache, each
	// pool serves once, the interpreters' files are in the page cache.
	for i := range cases {
		if _, err := one(fmt.Sprintf("rt-warmup-%d", i), &cases[i]); err != nil {
			return nil, fmt.Errorf("%s: %w", cases[i].Name, err)
		}
	}
	for i := range floors {
		if _, err := listenFloor(ctx, floorCmds[i]); err != nil {
			return nil, fmt.Errorf("%s: %w", floors[i].Name, err)
		}
	}
	for i := range p.N {
		for j := range cases {
			c := &cases[(i+j)%len(cases)]
			s, err := one(fmt.Sprintf("rt-%s-%d", c.Runtime, i), c)
			if err != nil {
				c.Failed++
				e.logf("runtimes: %s: %v", c.Name, err)
				if c.Failed > max(3, p.N/10) {
					return nil, err
				}
				continue
			}
			c.Samples = append(c.Samples, s)
		}
		for j := range floors {
			f := &floors[(i+j)%len(floors)]
			if err := settleRuntimes(ctx, pl); err != nil { // no refill competes
				return nil, err
			}
			d, err := listenFloor(ctx, floorCmds[(i+j)%len(floors)])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			f.Samples = append(f.Samples, ms(d))
		}
		if (i+1)%10 == 0 {
			e.logf("runtimes: %d of %d rounds", i+1, p.N)
		}
	}
	for i := range cases {
		c := &cases[i]
		c.Steps = map[string]coldStep{}
		for name, get := range map[string]func(coldSample) float64{
			"take": func(s coldSample) float64 { return s.Take }, "fetch": func(s coldSample) float64 { return s.Fetch },
			"load": func(s coldSample) float64 { return s.Load }, "init": func(s coldSample) float64 { return s.Init },
			"total": func(s coldSample) float64 { return s.Total }, "client": func(s coldSample) float64 { return s.Client },
		} {
			xs := make([]float64, len(c.Samples))
			for k, s := range c.Samples {
				xs[k] = get(s)
			}
			c.Steps[name] = stepOf(xs)
		}
		e.logf("runtimes: %s: total p50 %.2f ms p99 %.2f ms (load %.2f, init %.2f)", c.Name,
			c.Steps["total"].P50, c.Steps["total"].P99, c.Steps["load"].P50, c.Steps["init"].P50)
	}
	for i := range floors {
		floors[i].Step = stepOf(floors[i].Samples)
		e.logf("runtimes: floor %s: p50 %.2f ms p99 %.2f ms", floors[i].Name, floors[i].Step.P50, floors[i].Step.P99)
	}
	res.Cases, res.Floors = cases, floors
	res.Meta.finish()
	return res, nil
}

// installRuntime installs a shipped runtime (for its interpreter's real
// path).
func installRuntime(ctx context.Context, e *env, name string) (runtimes.Command, error) {
	rt, ok := runtimes.Builtin(name)
	if !ok {
		return runtimes.Command{}, fmt.Errorf("no runtime %s", name)
	}
	return rt.Install(ctx, filepath.Join(e.tmp, "runtime-"+name))
}

// startRuntimesPlane starts a Dataplane with the five pools; the exec
// pools' agents start the runtimes' bootstraps per load.
func startRuntimesPlane(ctx context.Context, e *env, reports chan<- coldstart.Report) (_ *plane, _ *heldProvider, err error) {
	p := &plane{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.pods, err = local.New(ctx, local.Config{AgentPath: e.art.agent, Dir: filepath.Join(e.tmp, "runtimes", "pods"),
		RuntimeArgs: map[string][]string{
			"python-exec": {"-bootstrap", "builtin:python", "-bootstrap-mode", "exec"},
			"node-exec":   {"-bootstrap", "builtin:node", "-bootstrap-mode", "exec"},
		}}); err != nil {
		return nil, nil, err
	}
	if p.store, err = code.NewOrigin(code.OriginConfig{}); err != nil {
		return nil, nil, err
	}
	held := &heldProvider{Provider: p.pods, gate: make(chan struct{})}
	close(held.gate)
	pools := map[string]warmpool.RuntimeConfig{}
	for _, r := range rtPools {
		pools[r] = warmpool.RuntimeConfig{Min: rtIdle, Max: rtIdle}
	}
	if p.dp, err = faas.New(faas.Config{
		Pods: held, Code: p.store, Pool: warmpool.Config{Runtimes: pools}, NodeID: "bench-runtimes",
		Observer: coldStartObserver(func(r coldstart.Report) {
			select {
			case reports <- r:
			default:
			}
		}),
	}); err != nil {
		return nil, nil, err
	}
	if err = p.dp.Start(ctx); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	p.srv = &http.Server{Handler: p.dp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	p.url = "http://" + ln.Addr().String()
	return p, held, nil
}

// settleRuntimes waits until every pool is full and nothing is created.
func settleRuntimes(ctx context.Context, pl *plane) error {
	return waitFor(ctx, 60*time.Second, func() bool {
		rs := pl.dp.Stats().Pool.Runtimes
		for _, r := range rtPools {
			if s := rs[r]; s.Idle < rtIdle || s.Creating != 0 || s.Waiting != 0 {
				return false
			}
		}
		return true
	}, func() error {
		return fmt.Errorf("pools did not settle within 60 s: %+v", pl.dp.Stats().Pool.Runtimes)
	})
}

// listenFloor starts argv with PORT set and returns the time until a dial
// to the port succeeds, polled as the agent polls (200 µs growing to 1 ms).
func listenFloor(ctx context.Context, argv []string) (time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	backoff := 200 * time.Microsecond
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			took := time.Since(start)
			_ = c.Close()
			return took, nil
		}
		select {
		case <-done:
			return 0, fmt.Errorf("%s exited before listening", filepath.Base(argv[0]))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff): // polling a port: nothing to wait on
		}
		backoff = min(backoff*3/2, time.Millisecond)
		if time.Since(start) > 10*time.Second {
			return 0, fmt.Errorf("%s did not listen within 10 s", filepath.Base(argv[0]))
		}
	}
}

func (r *runtimesResult) find(runtime string) *rtCase {
	for i := range r.Cases {
		if r.Cases[i].Runtime == runtime {
			return &r.Cases[i]
		}
	}
	return &rtCase{Steps: map[string]coldStep{}}
}

func runtimesChart(r *runtimesResult) *svgplot.Chart {
	c := &svgplot.Chart{
		Title:  "Cold start by runtime and mode: total (take + fetch + load + init), sorted samples",
		XLabel: "percentile of the case's cold starts",
		Panels: []Panel{{YLabel: "cold start (ms)", LogY: true}},
	}
	for _, k := range r.Cases {
		s := svgplot.Series{Name: k.Name, Markers: len(k.Samples) <= 30}
		xs := make([]float64, len(k.Samples))
		for i, v := range k.Samples {
			xs[i] = v.Total
		}
		sorted := stepSorted(xs)
		for i, v := range sorted {
			s.X = append(s.X, 100*float64(i+1)/float64(len(sorted)))
			s.Y = append(s.Y, math.Max(v, 0.01))
		}
		c.Panels[0].Series = append(c.Panels[0].Series, s)
	}
	for _, f := range r.Floors {
		c.Panels[0].Series = append(c.Panels[0].Series, svgplot.Series{Name: "floor: " + f.Name, Dashed: true,
			X: []float64{0, 100}, Y: []float64{math.Max(f.Step.P50, 0.01), math.Max(f.Step.P50, 0.01)}})
	}
	return c
}

func stepSorted(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}

func runtimesMarkdown(r *runtimesResult, svg string) string {
	var b strings.Builder
	b.WriteString(header(r.Meta, fmt.Sprintf("%d cold starts per case, the cases alternating, each a new function ID whose package the node has cached; "+
		"%d samples of each floor, interleaved", r.Params.N, r.Params.N)))
	fmt.Fprintf(&b, "\n![cold starts by runtime and mode](%s)\n\n", svg)
	var rows [][]string
	for _, c := range r.Cases {
		st := c.Steps
		pair := func(k string) string { return fmtMS(st[k].P50) + " / " + fmtMS(st[k].P99) }
		mode := "exec"
		if c.HotLoad {
			mode = "hot load"
		}
		rows = append(rows, []string{c.Name, mode, strconv.Itoa(len(c.Samples)), pair("take"), pair("load"), pair("init"),
			"**" + pair("total") + "**", pair("client")})
	}
	b.WriteString(table([]string{"case", "mode", "n", "take", "load (unpack + start)", "init", "total", "first request, client"}, "llrrrrrr", rows))
	b.WriteString("\n")
	var frows [][]string
	for _, f := range r.Floors {
		frows = append(frows, []string{f.Name, strconv.Itoa(len(f.Samples)), "**" + fmtMS(f.Step.P50) + " / " + fmtMS(f.Step.P99) + "**", f.What})
	}
	b.WriteString(table([]string{"floor", "n", "start → listening", "what"}, "lrrl", frows))
	b.WriteString("\nAll times in ms, p50 / p99 (nearest rank). *load* is the agent's part: copying the cached tree, then starting the process " +
		"until it listens (exec) or telling the running bootstrap to import the function (hot load). The pools' refills are held back during each " +
		"measured cold start, in every case alike.\n")
	ok := func(v bool) string {
		if v {
			return "✔"
		}
		return "✘"
	}
	goExec := r.find("go").Steps["total"].P50
	for _, lang := range []struct{ name, hot, exec string }{{"Python", "python", "python-exec"}, {"Node.js", "node", "node-exec"}} {
		hot, ex := r.find(lang.hot).Steps["total"], r.find(lang.exec).Steps["total"]
		ratio := 0.0
		if hot.P50 > 0 {
			ratio = ex.P50 / hot.P50
		}
		fmt.Fprintf(&b, "\nTarget (issue 18), %s: hot load ≤ a tenth of exec %s (p50 %s vs %s ms, %.1f× faster); hot load ≤ Go exec %s (p50 %s vs %s ms).",
			lang.name, ok(hot.P50 > 0 && hot.P50*10 <= ex.P50), fmtMS(hot.P50), fmtMS(ex.P50), ratio,
			ok(hot.P50 > 0 && hot.P50 <= goExec), fmtMS(hot.P50), fmtMS(goExec))
	}
	b.WriteString("\n")
	return b.String()
}
