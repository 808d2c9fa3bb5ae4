package faas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// An instance's life as the Dataplane sees it: the Starter reports each
// transition (observeInstance); a Ready instance of the function's current
// incarnation joins the routes, its agent is watched (watch), and waiting
// requests are served from it at once. It leaves when the scaler drains it
// (scaler.go), when the router gives up on it (replace: ejected too often,
// liveness failed, its function process exited) or when its pod is gone
// (podGone), and is then terminated and its pod deleted (terminateLater).

// observeInstance follows every instance the Starter creates. An instance
// whose function was removed, or redeployed, or the Dataplane is stopping,
// is terminated once Ready. An instance that the router retires on its own
// (Draining: reassigned, migrated, exited) is marked so that the scaler
// terminates it. It runs under the instance's lock: it must not transition
// the instance itself.
func (d *Dataplane) observeInstance(inst *lifecycle.Instance, t lifecycle.Transition) {
	d.obs.ObserveInstance(inst, t)
	fn := d.lookup(inst.FunctionID)
	switch {
	case t.To == lifecycle.Ready && t.From == lifecycle.Loaded:
		if fn == nil || !d.running() || inst.Generation < fn.firstGen {
			d.terminateLater(inst, "function removed or redeployed during the cold start")
			return
		}
		v := fn.version()
		slots := concurrency.NewSlots(v.spec.Mode, v.spec.Concurrency)
		fn.mu.Lock()
		if fn.removed {
			fn.mu.Unlock()
			d.terminateLater(inst, "function removed during the cold start")
			return
		}
		fn.instances[inst.ID] = &instance{inst: inst, slots: slots, gen: inst.Generation, readyAt: t.At, steady: inst.Dedicated}
		fn.mu.Unlock()
		if err := d.router.Add(t.At, inst, slots, fn.queue); err != nil {
			d.log.Warn("route not added", "instance", inst.ID, "err", err)
			return
		}
		fn.queue.Dispatch()
		d.watch(inst)
	case t.To == lifecycle.Draining || t.To == lifecycle.Terminated:
		d.unwatch(inst)
		if fn == nil {
			return
		}
		fn.mu.Lock()
		if in, ok := fn.instances[inst.ID]; ok && !in.draining {
			in.draining, in.drainSince = true, t.At
		}
		fn.mu.Unlock()
	}
}

// coldStartDone receives the report of every cold start.
func (d *Dataplane) coldStartDone(r coldstart.Report) {
	d.coldStarts.record(r)
	if fn := d.lookup(r.FunctionID); fn != nil {
		fn.stats.recordColdStart(r)
		if !r.Dedicated { // a steady instance's start has its own backoff
			fn.coldStartDone(r.Err == nil, d.clock.Now())
		}
		if r.Err == nil {
			d.locality.Add(localityKey{r.Node, fn.version().spec.Code.Digest}, struct{}{})
		}
	}
	d.obs.ObserveColdStart(r)
}

// replace is called by the router when it gives up on an instance (ejected
// repeatedly, liveness failed, its process exited): start a replacement;
// the router then moves the instance to Draining and the scaler terminates
// it.
func (d *Dataplane) replace(inst *lifecycle.Instance, reason string) {
	fn := d.lookup(inst.FunctionID)
	if fn == nil || !d.running() {
		return
	}
	d.log.Warn("replacing instance", "instance", inst.ID, "reason", reason)
	v := fn.version()
	d.ensure(fn, v, d.starter.InFlight(v.cs)+1)
}

// drainAll takes every instance of fn out of the routes, waits (bounded by
// ctx) until they have nothing in flight, then terminates them and deletes
// their pods, each deletion bounded by DrainTimeout: a drain that used up
// ctx must not leave the pods behind. It returns ctx.Err() when the wait was
// cut short, with the errors of the deletions.
func (d *Dataplane) drainAll(ctx context.Context, fn *function, reason string) error {
	now := d.clock.Now()
	fn.mu.Lock()
	insts := make([]*instance, 0, len(fn.instances))
	for _, in := range fn.instances {
		insts = append(insts, in)
	}
	clear(fn.instances)
	fn.mu.Unlock()
	for _, in := range insts {
		d.router.Remove(now, in.inst, reason)
		_ = in.inst.Transition(now, lifecycle.Draining, reason)
	}
	var errs []error
	if err := waitIdle(ctx, insts); err != nil {
		errs = append(errs, err)
	}
	for _, in := range insts {
		errs = append(errs, d.terminateNow(in.inst, reason))
	}
	return errors.Join(errs...)
}

// drainPoll is how often a drain looks whether requests are still in
// flight. Real time: it bounds how late a drain notices, not a policy.
const drainPoll = 10 * time.Millisecond

// waitIdle waits until no request is in flight on insts, or ctx is done.
func waitIdle(ctx context.Context, insts []*instance) error {
	busy := func() bool {
		for _, in := range insts {
			if in.slots.InFlight() > 0 {
				return true
			}
		}
		return false
	}
	for busy() {
		if err := clock.Sleep(ctx, clock.System(), drainPoll); err != nil {
			return err
		}
	}
	return nil
}

// terminateNow ends an instance that is out of the routes and deletes its
// pod, bounded by DrainTimeout.
func (d *Dataplane) terminateNow(inst *lifecycle.Instance, reason string) error {
	now := d.clock.Now()
	_ = inst.Transition(now, lifecycle.Draining, reason)
	_ = inst.Transition(now, lifecycle.Terminated, reason)
	if d.pool == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
	defer cancel()
	if err := d.pool.Delete(ctx, podOf(inst)); err != nil && !errors.Is(err, warmpool.ErrPodNotFound) {
		return fmt.Errorf("faas: deleting pod %s: %w", inst.PodID, err)
	}
	return nil
}

// terminateLater takes inst out of the routes and terminates it in the
// background, also while the Dataplane stops (which waits for it).
func (d *Dataplane) terminateLater(inst *lifecycle.Instance, reason string) {
	d.router.Remove(d.clock.Now(), inst, reason)
	d.cleanup.Go(func() {
		if err := d.terminateNow(inst, reason); err != nil {
			d.log.Warn("terminating instance failed", "instance", inst.ID, "err", err)
		}
	})
}

func podOf(inst *lifecycle.Instance) warmpool.Pod {
	return warmpool.Pod{ID: inst.PodID, Node: inst.Node, Addr: inst.Addr, Control: inst.Control, Runtime: inst.Runtime}
}

// podGone reacts to a pod the provider reports deleted (e.g. its agent
// crashed): its instance leaves the routes at once, without waiting for
// health checks, and is replaced.
func (d *Dataplane) podGone(pod warmpool.Pod) {
	for fn := range d.funcs.All() {
		fn.mu.Lock()
		var gone *instance
		for _, in := range fn.instances {
			if in.inst.PodID == pod.ID {
				gone = in
				break
			}
		}
		if gone != nil {
			delete(fn.instances, gone.inst.ID)
		}
		fn.mu.Unlock()
		if gone == nil {
			continue
		}
		d.log.Warn("instance lost: its pod is gone", "instance", gone.inst.ID, "pod", pod.ID)
		// Terminating also releases the warm pool's claim on the pod.
		d.terminateLater(gone.inst, "pod deleted")
		if fn.queue.Len() > 0 {
			d.wantCapacity(fn, fn.version(), fn.queue.Len())
		}
		return
	}
}

// agentWatcher is what the Dataplane needs of its agent client to follow
// an instance: the agent's watch long poll. *lifecycle.Client has it; an
// agent client without it leaves the instance to health checks and to the
// answers of its agent.
type agentWatcher interface {
	Watch(ctx context.Context, ctl lifecycle.Control, known string, wait time.Duration) (lifecycle.WatchResponse, error)
}

// watch holds a long poll on inst's agent for as long as inst is routed,
// so that the death of its function process takes it out of the routes
// and starts a replacement at once, before any request or health check
// finds out. unwatch (the instance leaving Ready for good) and the stop end
// it.
func (d *Dataplane) watch(inst *lifecycle.Instance) {
	w, ok := d.cfg.Agents.Client.(agentWatcher)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	if _, dup := d.watches.LoadOrStore(inst, context.CancelFunc(cancel)); dup {
		cancel()
		return
	}
	if !d.spawn(func() {
		defer d.unwatch(inst)
		d.follow(ctx, w, inst)
	}) {
		d.unwatch(inst)
	}
}

// unwatch stops the watch of inst, if any.
func (d *Dataplane) unwatch(inst *lifecycle.Instance) {
	if c, ok := d.watches.LoadAndDelete(inst); ok {
		c.(context.CancelFunc)()
	}
}

// Bounds of the pause between two failed watch calls: an agent that cannot
// be reached is the health checks' business, and a watch that fails at
// once must not spin.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// follow is the watch loop of one instance.
func (d *Dataplane) follow(ctx context.Context, w agentWatcher, inst *lifecycle.Instance) {
	pause := watchRetryMin
	for ctx.Err() == nil {
		resp, err := w.Watch(ctx, inst.Control, lifecycle.AgentReady, 0)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && resp.State == lifecycle.AgentReady && resp.FunctionID == inst.FunctionID:
			pause = watchRetryMin // the wait ended with nothing to tell
			continue
		case err == nil && resp.State == lifecycle.AgentExited && resp.FunctionID == inst.FunctionID:
			d.log.Warn("function process exited", "instance", inst.ID, "function", inst.FunctionID, "exit", resp.Exit)
			_ = d.router.ReportHealth(d.clock.Now(), router.HealthReport{InstanceID: inst.ID, Exited: true, Reason: "function process exited: " + resp.Exit})
			return
		case err == nil:
			// Another function, or none: the address no longer serves
			// this instance.
			_ = d.router.ReportHealth(d.clock.Now(), router.HealthReport{InstanceID: inst.ID, Reassigned: true,
				Reason: "agent reports " + resp.State + " " + resp.FunctionID})
			return
		case errors.Is(err, lifecycle.CodeUnauthorized), errors.Is(err, lifecycle.CodeBadRequest):
			// An agent that does not take our watch (another version, a
			// custom agent): health checks cover it.
			d.log.Debug("agent does not support watching", "instance", inst.ID, "err", err)
			return
		}
		if clock.Sleep(ctx, d.clock, pause) != nil {
			return
		}
		pause = min(pause*2, watchRetryMax)
	}
}
