package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/concurrency"
	etcdlease "github.com/faasplane/faas/contrib/etcd"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// A node process is one dataplane node: a Dataplane whose cluster is the
// etcd membership, whose pods come from the pod host, and whose gateway
// also answers /admin/state for the orchestrator.

// readyPrefix starts the line a role prints on stdout once it serves.
const readyPrefix = "READY "

// nodeState is what a node tells the orchestrator on /admin/state.
type nodeState struct {
	ID            string            `json:"id"`
	Nodes         []string          `json:"nodes"`
	Owners        map[string]string `json:"owners"`
	Forwarded     uint64            `json:"forwarded"`
	Failovers     uint64            `json:"failovers"`
	PassedOver    uint64            `json:"passed_over"`
	ColdStarts    uint64            `json:"cold_starts"`
	ColdFailures  uint64            `json:"cold_failures"`
	AlreadyLoaded uint64            `json:"already_loaded"`
	Idle          int               `json:"idle_pods"`
	Adopted       int64             `json:"adopted_pods"`
}

// loadObserver counts the cold starts that an agent refused because its pod
// was already loaded: a pod handed to two nodes would show here.
type loadObserver struct {
	faas.NopObserver
	alreadyLoaded atomic.Uint64
}

func (o *loadObserver) ObserveColdStart(r coldstart.Report) {
	if code, _ := lifecycle.CodeOf(r.Err); r.Err != nil && code == lifecycle.CodeAlreadyLoaded {
		o.alreadyLoaded.Add(1)
	}
}

func runNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	id := fs.String("id", "", "node ID")
	etcdAddr := fs.String("etcd", "", "etcd client URL")
	podHost := fs.String("pods", "", "pod host URL")
	specs := fs.String("functions", "", "JSON file of the function specs to deploy")
	ttl := fs.Duration("ttl", 3*time.Second, "lease and heartbeat TTL")
	prefix := fs.String("prefix", "/faasplane/example/", "etcd key prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *etcdAddr == "" || *podHost == "" || *specs == "" {
		return errors.New("node: -id, -etcd, -pods and -functions are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", *id)

	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{*etcdAddr}, DialTimeout: 2 * time.Second, Logger: quietZap(),
		// Notice etcd's return at once rather than after gRPC's default
		// reconnection backoff (seconds).
		DialOptions: []grpc.DialOption{etcdlease.ReconnectBackoff(250 * time.Millisecond)},
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	store, err := etcdlease.New(cli, etcdlease.Config{Prefix: *prefix, Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()

	var fns []faas.FunctionSpec
	b, err := os.ReadFile(*specs)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &fns); err != nil {
		return fmt.Errorf("node: %s: %w", *specs, err)
	}
	origin, err := code.NewOrigin(code.OriginConfig{})
	if err != nil {
		return err
	}
	defer origin.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	obs := &loadObserver{}
	dp, err := faas.New(faas.Config{
		Pods:     newRemotePods(*podHost),
		Code:     origin,
		NodeID:   *id,
		Observer: obs,
		Logger:   logger,
		Cluster:  faas.ClusterConfig{Membership: store, Leases: store, Advertise: ln.Addr().String()},
		Pool: warmpool.Config{
			Runtimes:      map[string]warmpool.RuntimeConfig{"go": {Min: 2, Max: 8}},
			LeaseTTL:      *ttl,
			ProbeInterval: time.Second,
		},
		Scaler: faas.ScalerConfig{
			Meter:    concurrency.MeterConfig{StableWindow: 3 * time.Second, PanicWindow: time.Second, Bucket: 100 * time.Millisecond},
			Interval: 200 * time.Millisecond,
		},
	})
	if err != nil {
		return err
	}
	if err := dp.Start(ctx); err != nil {
		return err
	}
	defer dp.Close()
	for _, s := range fns {
		if err := dp.Deploy(ctx, s); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", dp)
	mux.HandleFunc("GET /admin/state", func(w http.ResponseWriter, r *http.Request) {
		st := dp.Stats()
		s := nodeState{ID: *id, Owners: map[string]string{}, Forwarded: st.Forwarded, Failovers: st.Failovers, PassedOver: st.PassedOver,
			ColdStarts: st.ColdStarts.Count, ColdFailures: st.ColdStarts.Failed, AlreadyLoaded: obs.alreadyLoaded.Load(),
			Idle: st.Pool.Runtimes["go"].Idle, Adopted: st.Pool.Adopted}
		for _, n := range dp.Nodes() {
			s.Nodes = append(s.Nodes, n.ID)
		}
		for _, f := range fns {
			s.Owners[f.ID], _, _ = dp.Owner(f.ID)
		}
		writeJSON(w, s)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("%s%s\n", readyPrefix, ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return dp.Shutdown(sctx)
}

// quietZap silences the etcd client's own logger.
func quietZap() *zap.Logger { return zap.NewNop() }
