// Command cluster runs a multi-node faasplane dataplane on one machine and
// shows what happens when a node dies: three dataplane node processes share
// the functions and one population of real faas-agent pods through an
// embedded etcd (leases with fencing tokens, and the membership), with
// traffic spread over their three gateways.
//
// It prints, as it runs: who owns which function; the kill -9 of the node
// that owns the most, how long each of its functions is unavailable until
// its rendezvous successor serves it, and the requests that failed; the
// dead node's pods adopted by the survivors once its leases lapse; its
// restart, after which exactly its functions move back; etcd stopped for
// ten seconds under traffic, and the recovery; and, counted from the
// agents' own output, that no pod was ever loaded twice.
//
//	go run ./contrib/etcd/examples/cluster
//
// The pod host process stands in for a cluster's kubelets; the node and
// pod-host processes are this program re-executed in another role.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	if ok, err := runRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	o := options{}
	flag.IntVar(&o.nodes, "nodes", 3, "dataplane node processes")
	flag.IntVar(&o.functions, "functions", 12, "functions deployed on every node")
	flag.IntVar(&o.workers, "workers", 16, "concurrent clients")
	flag.DurationVar(&o.ttl, "ttl", 3*time.Second, "lease and heartbeat TTL")
	flag.DurationVar(&o.outage, "outage", 10*time.Second, "how long etcd is stopped")
	flag.BoolVar(&o.verbose, "v", false, "show the processes' logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, os.Stdout, o)
	if err == nil {
		err = rep.verdict(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

// verdict checks the run's promises.
func (r *report) verdict(o options) error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(r.FailoverP99 <= o.ttl+time.Second, "failover p99 %v exceeds the lease TTL plus one second (%v)", r.FailoverP99, o.ttl+time.Second)
	check(len(r.FailedElsewhere) == 0, "requests that failed at the kill without being on the dead node: %v", r.FailedElsewhere)
	check(r.FailedAfterKill == 0, "%d of the %d requests sent after the kill failed", r.FailedAfterKill, r.KillPhaseRequests)
	check(equalSets(r.MovedOnKill, r.KilledFunctions), "functions moved at the kill: %v, want the dead node's %v", r.MovedOnKill, r.KilledFunctions)
	check(len(r.MovedOnRestart) == 0, "after the restart, functions %v have another owner than before the kill", r.MovedOnRestart)
	check(r.MaxLoadsPerPod <= 1, "a pod was loaded %d times", r.MaxLoadsPerPod)
	check(r.AlreadyLoaded == 0, "%d loads were refused with already_loaded", r.AlreadyLoaded)
	check(r.OutageRequests > 0 && r.OutageFailed == 0, "during the etcd outage %d of %d requests failed", r.OutageFailed, r.OutageRequests)
	return errors.Join(errs...)
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
