package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/faasplane/faas/warmpool"
)

// killPhase kills the node that owns the most functions with SIGKILL,
// measures how long each of its functions is unavailable, waits for the
// survivors to adopt its pods, restarts it, and checks that only its
// functions moved, and moved back.
func (c *cluster) killPhase(ctx context.Context, rep *report, ids []string, owners map[string]string, byNode map[string][]string) error {
	victim := ids[0]
	for _, id := range ids {
		if len(byNode[id]) > len(byNode[victim]) {
			victim = id
		}
	}
	var survivors []string
	for _, id := range ids {
		if id != victim {
			survivors = append(survivors, id)
		}
	}
	rep.Killed, rep.KilledFunctions = victim, byNode[victim]
	if err := pause(ctx, time.Second); err != nil {
		return err
	}
	kill := time.Now()
	c.nodes[victim].kill()
	// The process is gone once reaped: until then it may still have been
	// reading requests, and those were in flight on it.
	dead := time.Now()
	c.logf("kill -9 %s (it owned %s); reaped after %v", victim, strings.Join(byNode[victim], " "), dead.Sub(kill).Round(time.Millisecond))

	// Each of its functions is back once a request that started after the
	// kill succeeds.
	deadline := kill.Add(c.o.ttl + 30*time.Second)
	back := map[string]time.Duration{}
	for len(back) < len(byNode[victim]) {
		for _, r := range c.load.between(kill, time.Time{}) {
			if _, seen := back[r.fn]; !seen && r.ok && owners[r.fn] == victim {
				back[r.fn] = r.end.Sub(kill)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %s's %d functions were served again within %v", len(back), victim, len(byNode[victim]), deadline.Sub(kill))
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	for _, fn := range byNode[victim] {
		rep.Unavailability = append(rep.Unavailability, back[fn])
	}
	rep.FailoverP50, rep.FailoverP99 = quantile(rep.Unavailability, .5), quantile(rep.Unavailability, .99)
	c.logf("failover: %s's %d functions served by their successors after p50 %v, p99 %v", victim, len(back),
		rep.FailoverP50.Round(time.Millisecond), rep.FailoverP99.Round(time.Millisecond))

	// The membership drops the dead node once its heartbeat lapses.
	if err := c.waitMembers(ctx, survivors, c.o.ttl+30*time.Second); err != nil {
		return err
	}
	rep.MembershipSettled = time.Since(kill)
	after, err := c.owners(ctx, survivors[0])
	if err != nil {
		return err
	}
	for _, fn := range sortedKeys(owners) {
		if after[fn] != owners[fn] {
			rep.MovedOnKill = append(rep.MovedOnKill, fn)
		}
	}
	c.logf("membership: %s gone after %v; moved: %s", victim, rep.MembershipSettled.Round(100*time.Millisecond), strings.Join(rep.MovedOnKill, " "))

	// Its pods: the idle ones are adopted by their new owners, its
	// instances deleted, once its leases lapse.
	adopted, orphans, err := c.orphans(ctx, victim, survivors, 3*c.o.ttl+10*time.Second)
	if err != nil {
		return err
	}
	rep.IdleAdopted = adopted
	c.logf("pods: the survivors adopted %d of %s's pods; %d of its pods remain unadopted", adopted, victim, orphans)

	ok, failed := countOK(c.load.between(dead, time.Time{}))
	rep.KillPhaseRequests, rep.FailedAfterKill = ok+failed, failed
	inFlight := c.load.failedInFlight(kill, dead)
	rep.FailedAtKill = len(inFlight)
	for _, r := range inFlight {
		if r.via != victim && !strings.Contains(r.err, "node "+victim+" ") {
			rep.FailedElsewhere = append(rep.FailedElsewhere, fmt.Sprintf("%s via %s: %s", r.fn, r.via, r.err))
		}
	}
	c.logf("requests: %d that were in flight while %s died failed; of the %d sent since, %d failed", rep.FailedAtKill, victim, ok+failed, failed)
	for _, r := range c.load.between(dead, time.Time{}) {
		if !r.ok {
			c.logf("  +%v..+%v via %s: %s", r.start.Sub(dead).Round(time.Millisecond), r.end.Sub(dead).Round(time.Millisecond), r.via, r.err)
		}
	}

	// It comes back under the same name: its functions move back to it,
	// and only those.
	if err := c.startNode(ctx, victim); err != nil {
		return err
	}
	if err := c.waitMembers(ctx, ids, 30*time.Second); err != nil {
		return err
	}
	again, err := c.owners(ctx, survivors[0])
	if err != nil {
		return err
	}
	for _, fn := range sortedKeys(owners) {
		if again[fn] != owners[fn] {
			rep.MovedOnRestart = append(rep.MovedOnRestart, fn)
		}
	}
	c.logf("restart: %s rejoined; functions whose owner differs from before the kill: %d", victim, len(rep.MovedOnRestart))
	return pause(ctx, 2*time.Second)
}

// orphans waits until every pod the victim created that still exists has
// been adopted by a survivor, and returns the survivors' adoptions and the
// victim's pods left unadopted.
func (c *cluster) orphans(ctx context.Context, victim string, survivors []string, limit time.Duration) (int64, int, error) {
	deadline := time.Now().Add(limit)
	for {
		pods, err := c.pods.List(ctx)
		if err != nil {
			return 0, 0, err
		}
		mine := 0
		for _, p := range pods {
			if strings.HasPrefix(p.Labels[warmpool.HolderLabel], victim+"-") {
				mine++
			}
		}
		var adopted int64
		for _, id := range survivors {
			s, err := c.state(ctx, id)
			if err != nil {
				return 0, 0, err
			}
			adopted += s.Adopted
		}
		if int64(mine) <= adopted || time.Now().After(deadline) {
			return adopted, max(0, mine-int(adopted)), nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
}

// outagePhase stops etcd for o.outage under traffic, then brings it back
// and waits until a cold start works again.
func (c *cluster) outagePhase(ctx context.Context, rep *report, ids []string) error {
	stopped := time.Now()
	c.etcd.Stop()
	c.logf("etcd stopped for %v (traffic goes on)", c.o.outage)
	if err := pause(ctx, c.o.outage); err != nil {
		return err
	}
	back := time.Now()
	if err := c.etcd.Resume(ctx); err != nil {
		return err
	}
	ok, failed := countOK(c.load.between(stopped, back))
	rep.OutageRequests, rep.OutageFailed = ok+failed, failed
	c.logf("etcd back: during the outage %d requests, %d failed", ok+failed, failed)

	// A function never invoked needs a pod, hence a lease: it proves the
	// warm pools work again.
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := back.Add(60 * time.Second)
	for {
		r := c.load.invoke(ctx, rng, coldFn)
		if r.ok {
			rep.RecoveredAfter = r.end.Sub(back)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no cold start succeeded within 60 s of etcd's return: %s", r.err)
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if err := c.waitMembers(ctx, ids, 30*time.Second); err != nil {
		return err
	}
	c.logf("recovered: a cold start succeeded %v after etcd returned; every node sees the others", rep.RecoveredAfter.Round(10*time.Millisecond))
	return nil
}

// loadsPhase counts, from the agents' own output, how many times each pod
// was loaded, and the load refusals the nodes saw.
func (c *cluster) loadsPhase(ctx context.Context, rep *report, ids []string) error {
	loads, err := c.pods.loads(ctx)
	if err != nil {
		return err
	}
	for _, n := range loads {
		rep.PodsLoaded++
		rep.MaxLoadsPerPod = max(rep.MaxLoadsPerPod, n)
	}
	for _, id := range ids {
		s, err := c.state(ctx, id)
		if err != nil {
			return err
		}
		rep.AlreadyLoaded += s.AlreadyLoaded
	}
	c.logf("loads: %d pods were loaded with a function, at most %d times each; already_loaded refusals: %d", rep.PodsLoaded, rep.MaxLoadsPerPod, rep.AlreadyLoaded)
	c.logf("requests in all: %d, failed %d", rep.Requests, rep.Failed)
	return nil
}
