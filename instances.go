package faas

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/faasplane/faas/coldstart"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
	"github.com/faasplane/faas/warmpool"
)

// The Dataplane's states.
const (
	stateNew int32 = iota
	stateRunning
	stateClosed
	stateStarting
)

// localityEntries bounds the (node, digest) pairs remembered for locality.
const localityEntries = 1 << 16

type localityKey struct{ node, digest string }

// Start starts the warm pools, the health monitor and the scaler. A
// configuration error of a subpackage is returned here, and the Dataplane
// is left as New returned it: Start may be called again, Close is safe.
func (d *Dataplane) Start(ctx context.Context) error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	switch d.state.Load() {
	case stateClosed:
		return ErrClosed
	case stateRunning:
		return errors.New("faas: dataplane already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pool, err := warmpool.New(d.cfg.Pool)
	if err != nil {
		return fmt.Errorf("faas: warm pool: %w", err)
	}
	cs := d.cfg.ColdStart
	cs.Pool, cs.Agent = pool, d.cfg.Agent
	if cs.Locality == nil {
		cs.Locality = coldstart.LocalityFunc(func(node, digest string) bool {
			return d.locality.Contains(localityKey{node, digest})
		})
	}
	cs.Observers = append(append([]lifecycle.Observer(nil), cs.Observers...), lifecycle.ObserverFunc(d.observeInstance))
	userReport := cs.OnColdStart
	cs.OnColdStart = func(r coldstart.Report) {
		d.coldStarts.record(r)
		if fn := d.lookup(r.FunctionID); fn != nil {
			fn.stats.recordColdStart(r)
			fn.coldStartDone(r.Err == nil, time.Now())
			if r.Err == nil {
				d.locality.Add(localityKey{r.Node, fn.version().spec.Code.Digest}, struct{}{})
			}
		}
		d.obs.ObserveColdStart(r)
		if userReport != nil {
			userReport(r)
		}
	}
	starter, err := coldstart.New(cs)
	if err != nil {
		_ = pool.Close()
		return fmt.Errorf("faas: cold starts: %w", err)
	}
	health, err := router.NewHealthMonitor(d.router, d.cfg.Health)
	if err == nil {
		err = health.Start()
	}
	if err != nil {
		_ = starter.Close()
		_ = pool.Close()
		return fmt.Errorf("faas: health: %w", err)
	}
	d.pool, d.starter, d.health = pool, starter, health
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.scaleLoop()
	}()
	d.state.Store(stateRunning) // publishes pool, starter and health
	d.log.Info("dataplane started", "node", d.cfg.NodeID)
	return nil
}

// running reports whether Start succeeded and Close has not begun; its
// atomic load orders the reads of pool and starter after Start's writes.
func (d *Dataplane) running() bool { return d.state.Load() == stateRunning }

// spawn runs f in a goroutine that Close waits for, unless the Dataplane
// is not running; it reports whether f was started.
func (d *Dataplane) spawn(f func()) bool {
	d.runMu.RLock()
	defer d.runMu.RUnlock()
	if !d.running() {
		return false
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
	return true
}

// Close stops the scaler and the health monitor, fails waiting requests,
// drains and terminates every instance (waiting up to DrainTimeout for the
// requests in flight), deletes their pods and the warm pools' idle pods,
// and waits for every goroutine it started. It is idempotent.
func (d *Dataplane) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	d.runMu.Lock()
	prev := d.state.Swap(stateClosed)
	d.runMu.Unlock()
	if prev == stateClosed {
		return nil
	}
	d.cancel()
	var errs []error
	if prev == stateRunning {
		errs = append(errs, d.health.Close())
	}
	d.wg.Wait() // the scaler and the cold-start requests
	if prev == stateRunning {
		// Cold starts still in flight end here (their pods deleted);
		// those that became Ready meanwhile were handed to cleanup.
		errs = append(errs, d.starter.Close())
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
	defer cancel()
	for fn := range d.all() {
		fn.queue.Close()
		errs = append(errs, d.drainAll(ctx, fn, "dataplane closed"))
	}
	d.cleanup.Wait()
	if prev == stateRunning {
		errs = append(errs, d.pool.Close())
	}
	if t, ok := d.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	d.log.Info("dataplane closed", "node", d.cfg.NodeID)
	return errors.Join(errs...)
}

// Remove removes a function. New requests for it get 404 at once and those
// waiting for capacity fail; its instances leave the routes, finish the
// requests in flight (bounded by ctx and DrainTimeout), and are terminated
// and their pods deleted before Remove returns.
func (d *Dataplane) Remove(ctx context.Context, id string) error {
	d.mu.Lock()
	fn := d.lookup(id)
	if fn == nil {
		d.mu.Unlock()
		return lifecycle.Errorf(lifecycle.CodeFunctionNotFound, "function %q is not deployed", id)
	}
	d.funcs.delete(id)
	fn.mu.Lock()
	fn.removed = true
	fn.mu.Unlock()
	d.mu.Unlock()

	fn.queue.Close()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DrainTimeout)
	defer cancel()
	err := d.drainAll(ctx, fn, "function removed")
	d.log.Info("function removed", "function", id)
	return err
}

// drainAll takes every instance of fn out of the routes, waits (bounded by
// ctx) until they have nothing in flight, then terminates them and deletes
// their pods. The deletions get their own DrainTimeout: a drain that used
// up ctx must not leave the pods behind.
func (d *Dataplane) drainAll(ctx context.Context, fn *function, reason string) error {
	now := time.Now()
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
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for _, in := range insts {
		for in.slots.InFlight() > 0 && ctx.Err() == nil {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	for _, in := range insts {
		errs = append(errs, d.terminateNow(dctx, in.inst, reason))
	}
	return errors.Join(errs...)
}

// terminateNow ends an instance that is out of the routes and deletes its
// pod, bounded by ctx.
func (d *Dataplane) terminateNow(ctx context.Context, inst *lifecycle.Instance, reason string) error {
	now := time.Now()
	_ = inst.Transition(now, lifecycle.Draining, reason)
	_ = inst.Transition(now, lifecycle.Terminated, reason)
	if d.pool == nil {
		return nil
	}
	if err := d.pool.Delete(ctx, podOf(inst)); err != nil && !errors.Is(err, warmpool.ErrPodNotFound) {
		return fmt.Errorf("faas: deleting pod %s: %w", inst.PodID, err)
	}
	return nil
}

// terminateLater terminates inst and deletes its pod in the background,
// bounded by DrainTimeout, also while the Dataplane closes (Close waits).
func (d *Dataplane) terminateLater(inst *lifecycle.Instance, reason string) {
	d.router.Remove(time.Now(), inst, reason)
	d.cleanup.Add(1)
	go func() {
		defer d.cleanup.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
		defer cancel()
		if err := d.terminateNow(ctx, inst, reason); err != nil {
			d.log.Warn("terminating instance failed", "instance", inst.ID, "err", err)
		}
	}()
}

func podOf(inst *lifecycle.Instance) warmpool.Pod {
	return warmpool.Pod{ID: inst.PodID, Node: inst.Node, Addr: inst.Addr, Control: inst.Control, Runtime: inst.Runtime}
}

// observeInstance follows every instance the Starter creates. A Ready
// instance of the function's current incarnation joins the function and the
// routes, and requests waiting for capacity are served from it at once; one
// whose function was removed (or redeployed, or the Dataplane is closing)
// is terminated. An instance that the router retires on its own (Draining:
// reassigned, migrated) is marked so that the scaler terminates and
// replaces it. It runs under the instance's lock: it must not transition
// the instance itself.
func (d *Dataplane) observeInstance(inst *lifecycle.Instance, t lifecycle.Transition) {
	d.obs.ObserveInstance(inst, t)
	fn := d.lookup(inst.FunctionID)
	switch {
	case t.To == lifecycle.Ready && t.From == lifecycle.Loaded:
		gen, _ := strconv.ParseUint(inst.Generation, 10, 64)
		if fn == nil || !d.running() || gen < fn.firstGen {
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
		fn.instances[inst.ID] = &instance{inst: inst, slots: slots, gen: gen, readyAt: t.At}
		fn.mu.Unlock()
		if err := d.router.Add(t.At, inst, slots); err != nil {
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

// replace is called by the router when it gives up on an instance (ejected
// repeatedly, liveness failed): start a replacement; the router then moves
// the instance to Draining and the scaler terminates it.
func (d *Dataplane) replace(inst *lifecycle.Instance, reason string) {
	fn := d.lookup(inst.FunctionID)
	if fn == nil || !d.running() {
		return
	}
	d.log.Warn("replacing instance", "instance", inst.ID, "reason", reason)
	d.ensure(fn, fn.version(), d.starter.InFlight(fn.version().cs)+1)
}
