// Command quickstart is the README's main command: an embedded faasplane
// dataplane with real agent processes on 127.0.0.1.
//
// It builds the sample functions (examples/functions/hello and sleep, and
// the Python and Node.js hellos hello-py and hello-node) into code
// packages, serves them from an origin over HTTP on loopback, starts a
// Dataplane whose warm pools hold generic faas-agent processes (pods/local,
// spread over two simulated nodes; the python and node pods run their
// runtime's bootstrap, into which a cold start hot-loads the function),
// deploys the functions, and drives real
// HTTP traffic through the gateway in five phases: a warm-up, a burst that
// forces scale-up, an overload that triggers load shedding, an idle gap in
// which the functions scale to zero, and a return that cold-starts them
// again. It prints a line per phase as it runs and a final report, and exits
// non-zero if anything went wrong.
//
//	go run ./examples/quickstart          # the demo, under a minute
//	go run ./examples/quickstart -serve   # then keep the gateway up for curl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/admin"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/loadshed"
	"github.com/faasplane/faas/pods/local"
	"github.com/faasplane/faas/warmpool"
)

func main() {
	var o options
	flag.BoolVar(&o.serve, "serve", false, "after the demo, keep the gateway up and print curl commands (Ctrl-C stops)")
	flag.Float64Var(&o.scale, "scale", 1, "scale phase durations and load (the smoke test uses 0.3)")
	flag.BoolVar(&o.verbose, "v", false, "log the dataplane's events to stderr")
	flag.StringVar(&o.admin, "admin", "127.0.0.1:9090", "with -serve: where the status page and /metrics listen")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// shedCapacity is the load shedder's capacity: the requests the dataplane
// holds in flight before it sheds. The overload phase offers a multiple of
// it.
const shedCapacity = 64

type options struct {
	serve   bool
	scale   float64
	verbose bool
	admin   string
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.scale <= 0 || o.scale > 10 {
		return errors.New("-scale must be in (0, 10]")
	}
	start := time.Now()
	fmt.Fprintln(w, "faasplane quickstart: an embedded dataplane with real agent processes on 127.0.0.1")
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}

	dir, err := os.MkdirTemp("", "faas-quickstart-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// 1. Build the functions and the agent, and serve the packages.
	t := time.Now()
	fmt.Fprint(w, "  building functions hello, sleep, hello-py, hello-node and the faas-agent binary ... ")
	refs := map[string]code.Ref{}
	if err := os.Mkdir(filepath.Join(dir, "code"), 0o755); err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	for _, name := range []string{"hello", "sleep", "hello-py", "hello-node"} {
		var pkg []byte
		if name == "hello" || name == "sleep" {
			pkg, err = code.PackGo(ctx, "github.com/faasplane/faas/examples/functions/"+name, code.Manifest{})
		} else {
			// Python and Node.js functions are their source and faas.json.
			pkg, err = code.PackDir(filepath.Join(root, "examples", "functions", name))
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dir, "code", name+".tar.gz")
		if err := os.WriteFile(path, pkg, 0o644); err != nil {
			return err
		}
		refs[name] = code.RefFor("file://"+path, pkg)
	}
	agentBin, err := local.BuildAgent(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "done (%v)\n", time.Since(t).Round(100*time.Millisecond))

	originURL, stopOrigin, err := serveOrigin(filepath.Join(dir, "code"))
	if err != nil {
		return err
	}
	defer stopOrigin()
	for name, ref := range refs {
		ref.URI = originURL + "/" + name + ".tar.gz"
		refs[name] = ref
	}
	fmt.Fprintf(w, "  origin:    %s (code packages over HTTP; agents fetch through their node's cache)\n", originURL)

	// 2. The dataplane: local agent processes on two simulated nodes.
	pods, err := local.New(ctx, local.Config{AgentPath: agentBin, Dir: filepath.Join(dir, "pods"), Nodes: []string{"node-a", "node-b"}, Logger: logger})
	if err != nil {
		return err
	}
	defer pods.Close()
	origin, err := code.NewOrigin(code.OriginConfig{})
	if err != nil {
		return err
	}
	defer origin.Close()
	dp, err := faas.New(faas.Config{
		Pods: pods,
		Code: origin,
		Pool: warmpool.Config{Runtimes: map[string]warmpool.RuntimeConfig{"go": {Min: 4, Max: 24}, "python": {Min: 1, Max: 4}, "node": {Min: 1, Max: 4}}},
		Scaler: faas.ScalerConfig{
			// Short windows so that the demo scales within seconds (the
			// defaults are Knative's 60 s stable and 6 s panic windows).
			Meter:    concurrency.MeterConfig{StableWindow: 3 * time.Second, PanicWindow: time.Second, Bucket: 100 * time.Millisecond},
			Interval: 200 * time.Millisecond,
		},
		// A known capacity, so that the overload phase sheds predictably
		// (the default learns it with an adaptive limit).
		Shedding: loadshed.Config{Capacity: shedCapacity, Burst: -1},
		NodeID:   "quickstart",
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gw := &http.Server{Handler: dp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = gw.Serve(ln) }()
	defer gw.Close()
	gateway := "http://" + ln.Addr().String()
	fmt.Fprintf(w, "  dataplane: gateway %s, warm pool of 4 to 24 generic agents on node-a and node-b (and 1 to 4 each of python and node)\n", gateway)

	keepAlive := time.Duration(float64(2*time.Second) * o.scale)
	for _, s := range []faas.FunctionSpec{
		{ID: "hello", Runtime: "go", Code: refs["hello"], Concurrency: 8, KeepAlive: keepAlive},
		{ID: "sleep", Runtime: "go", Code: refs["sleep"], Concurrency: 4, MaxInstances: 16, KeepAlive: keepAlive, QueueTimeout: 5 * time.Second},
		{ID: "hello-py", Runtime: "python", Code: refs["hello-py"], Concurrency: 8, KeepAlive: keepAlive},
		{ID: "hello-node", Runtime: "node", Code: refs["hello-node"], Concurrency: 8, KeepAlive: keepAlive},
	} {
		if err := dp.Deploy(ctx, s); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "  deployed:  hello (echo, 8 requests per instance), sleep (4 per instance, at most 16 instances), hello-py and hello-node (the same echo in Python and Node.js); keep-alive %v\n\n", keepAlive)

	// The pools fill in the background; the demo starts from full pools, as
	// a dataplane that has run for a while does, so that the first cold
	// starts show a take from the pool, not an agent's start.
	if err := waitPools(ctx, dp, map[string]int{"go": 4, "python": 1, "node": 1}); err != nil {
		return err
	}
	d := &demo{w: w, dp: dp, gateway: gateway, client: newClient(), scale: o.scale}
	if err := d.phases(ctx); err != nil {
		return err
	}
	d.report()
	if err := d.verdict(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nOK: all phases behaved as expected (%v in all)\n", time.Since(start).Round(100*time.Millisecond))
	if o.serve {
		stopAdmin, err := serveAdmin(dp, o.admin)
		if err != nil {
			return err
		}
		defer stopAdmin()
		d.admin = "http://" + o.admin
		return d.serve(ctx)
	}
	return nil
}

// serveAdmin serves the status page (/admin/) and the metrics (/metrics)
// on their own listener: never on the gateway, where callers are.
func serveAdmin(dp *faas.Dataplane, addr string) (func(), error) {
	page, err := admin.New(dp, admin.Config{})
	if err != nil {
		return nil, err
	}
	metrics, err := admin.Metrics(dp, admin.MetricsConfig{})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", page))
	mux.Handle("/metrics", metrics)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-admin %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// waitPools waits, for at most 30 s, until each runtime's pool has its
// idle agents.
func waitPools(ctx context.Context, dp *faas.Dataplane, idle map[string]int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		full := true
		pools := dp.Stats().Pool.Runtimes
		for rt, n := range idle {
			full = full && pools[rt].Idle >= n
		}
		if full {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the warm pools did not fill within 30 s: %+v", pools)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // the pool offers no notification
		}
	}
}

// moduleRoot returns the directory of the main module (the Python and
// Node.js hellos are packed from their source there).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not in a Go module: run the quickstart from the faasplane repository")
	}
	return filepath.Dir(gomod), nil
}

// serveOrigin serves dir over HTTP on loopback: the functions' code origin.
func serveOrigin(dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// serve keeps the gateway up for manual requests until ctx is done.
func (d *demo) serve(ctx context.Context) error {
	fmt.Fprintf(d.w, "\nThe gateway stays up; try (Ctrl-C to stop):\n\n")
	fmt.Fprintf(d.w, "  curl -i %s/invoke/hello -d 'hello, faasplane'\n", d.gateway)
	fmt.Fprintf(d.w, "  curl -i -H 'X-Faas-Function-Id: sleep' '%s/?ms=250'\n", d.gateway)
	fmt.Fprintf(d.w, "  curl -i %s/invoke/nope            # 404 function_not_found, with the X-Faas-Error-* headers\n", d.gateway)
	fmt.Fprintf(d.w, "  curl -i -H 'X-Faas-Caller: tenant-a' -H 'X-Faas-Priority: critical' %s/invoke/hello -d hi\n", d.gateway)
	fmt.Fprintf(d.w, "  open %s/admin/   # status page (JSON: %s/admin/?format=json)\n", d.admin, d.admin)
	fmt.Fprintf(d.w, "  curl -s %s/metrics | grep ^faas_\n", d.admin)
	<-ctx.Done()
	fmt.Fprintln(d.w, "\nstopping: every agent process is stopped and reaped")
	return nil
}
