package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/contrib/etcd/etcdtest"
	"github.com/faasplane/faas/pods/local"
)

// options tune a run of the example.
type options struct {
	nodes     int
	functions int
	workers   int
	ttl       time.Duration
	outage    time.Duration
	verbose   bool
}

// report holds what a run measured.
type report struct {
	Nodes, Functions         int
	Killed                   string
	KilledFunctions          []string
	Unavailability           []time.Duration // per function of the killed node
	FailoverP50, FailoverP99 time.Duration
	FailedAtKill             int           // requests in flight while the node died that failed
	FailedElsewhere          []string      // of those, the ones that were not on the dead node
	KillPhaseRequests        int           // requests that started after its death, until the restart
	FailedAfterKill          int           // of those, the failed ones
	MembershipSettled        time.Duration // from the kill until every survivor saw it
	MovedOnKill              []string      // functions whose owner changed at the kill
	MovedOnRestart           []string      // functions whose owner differs after the restart from before the kill
	IdleAdopted              int64         // pods the survivors adopted
	OutageRequests           int
	OutageFailed             int
	RecoveredAfter           time.Duration // from etcd's return until a cold start succeeded
	PodsLoaded               int
	MaxLoadsPerPod           int
	AlreadyLoaded            uint64
	Requests, Failed         int
}

// cluster is the orchestrator's view of the running processes.
type cluster struct {
	o       options
	w       io.Writer
	etcd    *etcdtest.Server
	podHost *proc
	pods    *remotePods
	nodes   map[string]*proc
	args    []string // the node flags common to every node
	load    *loadgen
	start   time.Time
}

func (c *cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.w, "[%5.1fs] %s\n", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, w io.Writer, o options) (*report, error) {
	c := &cluster{o: o, w: w, nodes: map[string]*proc{}, start: time.Now()}
	dir, err := os.MkdirTemp("", "faas-cluster-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer c.stopAll()

	c.etcd, err = etcdtest.StartEmbedded(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		return nil, err
	}
	c.logf("etcd: embedded, %s", c.etcd.Endpoint())

	fns, err := c.buildFunctions(ctx, dir)
	if err != nil {
		return nil, err
	}
	agent, err := local.BuildAgent(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		return nil, err
	}
	c.podHost, err = startProc(ctx, "podhost", "podhost", o.verbose, "-agent", agent, "-dir", filepath.Join(dir, "pods"))
	if err != nil {
		return nil, err
	}
	c.pods = newRemotePods(c.podHost.addr)
	c.logf("pod host: %s (faas-agent processes on 127.0.0.1, shared by every node)", c.podHost.addr)
	c.args = []string{"-etcd", c.etcd.Endpoint(), "-pods", c.podHost.addr, "-functions", fns, "-ttl", o.ttl.String()}

	ids := make([]string, o.nodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("dp-%d", i+1)
	}
	for _, id := range ids {
		if err := c.startNode(ctx, id); err != nil {
			return nil, err
		}
	}
	if err := c.waitMembers(ctx, ids, 30*time.Second); err != nil {
		return nil, err
	}
	owners, err := c.owners(ctx, ids[0])
	if err != nil {
		return nil, err
	}
	delete(owners, coldFn) // kept cold for the outage phase
	c.logf("%d nodes see each other; who owns what:", len(ids))
	byNode := map[string][]string{}
	for fn, n := range owners {
		byNode[n] = append(byNode[n], fn)
	}
	for _, id := range ids {
		slices.Sort(byNode[id])
		c.logf("  %s: %s", id, strings.Join(byNode[id], " "))
	}
	rep := &report{Nodes: o.nodes, Functions: o.functions}

	// Traffic over every gateway, for the rest of the run.
	var names []string
	for i := range o.functions {
		names = append(names, fnName(i))
	}
	c.load = newLoadgen(names)
	for id, p := range c.nodes {
		c.load.setGateway(id, "http://"+p.addr)
	}
	lctx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { c.load.run(lctx, o.workers); close(loadDone) }()
	defer func() { stopLoad(); <-loadDone }()
	if err := c.warm(ctx, names); err != nil {
		return nil, err
	}

	if err := c.killPhase(ctx, rep, ids, owners, byNode); err != nil {
		return nil, err
	}
	if err := c.outagePhase(ctx, rep, ids); err != nil {
		return nil, err
	}
	stopLoad()
	<-loadDone

	all := c.load.between(c.start, time.Time{})
	ok, failed := countOK(all)
	rep.Requests, rep.Failed = ok+failed, failed
	if err := c.loadsPhase(ctx, rep, ids); err != nil {
		return nil, err
	}
	return rep, nil
}

func fnName(i int) string { return fmt.Sprintf("fn-%02d", i) }

// coldFn is deployed everywhere and invoked only to prove that cold starts
// work again after the etcd outage.
const coldFn = "fn-cold"

// buildFunctions packs the hello function, serves it over HTTP and writes
// the specs every node deploys; it returns the specs file.
func (c *cluster) buildFunctions(ctx context.Context, dir string) (string, error) {
	pkg, err := code.PackGo(ctx, "github.com/faasplane/faas/examples/functions/hello", code.Manifest{})
	if err != nil {
		return "", err
	}
	codeDir := filepath.Join(dir, "code")
	if err := os.MkdirAll(codeDir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(codeDir, "hello.tar.gz"), pkg, 0o644); err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(codeDir)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	ref := code.RefFor("http://"+ln.Addr().String()+"/hello.tar.gz", pkg)
	var specs []faas.FunctionSpec
	for i := range c.o.functions {
		specs = append(specs, faas.FunctionSpec{ID: fnName(i), Runtime: "go", Code: ref, Concurrency: 4, KeepAlive: time.Minute})
	}
	specs = append(specs, faas.FunctionSpec{ID: coldFn, Runtime: "go", Code: ref, Concurrency: 4, KeepAlive: time.Minute})
	b, err := json.Marshal(specs)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "functions.json")
	return path, os.WriteFile(path, b, 0o644)
}

func (c *cluster) startNode(ctx context.Context, id string) error {
	p, err := startProc(ctx, id, "node", c.o.verbose, append([]string{"-id", id}, c.args...)...)
	if err != nil {
		return err
	}
	c.nodes[id] = p
	if c.load != nil {
		c.load.setGateway(id, "http://"+p.addr)
	}
	c.logf("node %s: gateway http://%s", id, p.addr)
	return nil
}

func (c *cluster) stopAll() {
	for _, p := range c.nodes {
		_ = p.stop(15 * time.Second)
	}
	if c.podHost != nil {
		_ = c.podHost.stop(15 * time.Second)
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
}

// state asks a node for its state.
func (c *cluster) state(ctx context.Context, id string) (nodeState, error) {
	var s nodeState
	p := c.nodes[id]
	if p == nil {
		return s, fmt.Errorf("no node %s", id)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/admin/state", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (c *cluster) owners(ctx context.Context, id string) (map[string]string, error) {
	s, err := c.state(ctx, id)
	return s.Owners, err
}

// waitMembers waits until every node in ids sees exactly ids.
func (c *cluster) waitMembers(ctx context.Context, ids []string, limit time.Duration) error {
	want := slices.Sorted(slices.Values(ids))
	deadline := time.Now().Add(limit)
	for {
		settled := true
		for _, id := range ids {
			s, err := c.state(ctx, id)
			if err != nil || !slices.Equal(s.Nodes, want) {
				settled = false
				break
			}
		}
		if settled {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the nodes did not all see %v within %v", want, limit)
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d or until ctx ends: the orchestrator polls real processes.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// warm runs traffic until every function answered.
func (c *cluster) warm(ctx context.Context, names []string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := map[string]bool{}
		for _, r := range c.load.between(c.start, time.Time{}) {
			if r.ok {
				done[r.fn] = true
			}
		}
		if len(done) == len(names) {
			ok, failed := countOK(c.load.between(c.start, time.Time{}))
			c.logf("traffic: %d workers over %d gateways; every function warm (%d requests, %d failed)", c.o.workers, len(c.nodes), ok+failed, failed)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d functions answered within 60 s", len(done), len(names))
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
