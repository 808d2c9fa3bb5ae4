package faas

import (
	"slices"
	"time"

	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// scaleLoop is the Dataplane's control loop: it samples the demand of every
// function for its meter, asks each function's scaling policy how many
// instances it should have, starts or drains instances accordingly, rolls
// updated functions and terminates drained instances.
func (d *Dataplane) scaleLoop() {
	sample := time.NewTicker(d.cfg.SampleInterval)
	defer sample.Stop()
	scale := time.NewTicker(d.cfg.ScaleInterval)
	defer scale.Stop()
	var watch <-chan warmpool.PodEvent
	watcher, _ := d.cfg.Pods.(warmpool.PodWatcher)
	rewatch := time.NewTimer(0)
	defer rewatch.Stop()
	if watcher == nil {
		rewatch.Stop()
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case now := <-sample.C:
			d.sample(now)
		case now := <-scale.C:
			d.sample(now)
			d.scale(now)
		case <-rewatch.C:
			ch, err := watcher.Watch(d.ctx)
			if err != nil {
				d.log.Warn("watching pods failed; retrying", "err", err)
				rewatch.Reset(time.Second)
				continue
			}
			watch = ch
		case ev, ok := <-watch:
			if !ok {
				watch = nil
				rewatch.Reset(100 * time.Millisecond)
				continue
			}
			if ev.Type == warmpool.PodDeleted {
				d.podGone(ev.Pod, time.Now())
			}
		}
	}
}

// sample feeds each function's demand (requests waiting or running) to its
// meter; idle functions that were idle at the last sample are skipped.
func (d *Dataplane) sample(now time.Time) {
	for fn := range d.all() {
		n := fn.demand.Load()
		if n == 0 && fn.sampled == 0 {
			continue
		}
		if fn.meter == nil {
			fn.meter = d.newMeter()
		}
		fn.meter.Observe(now, int(n))
		fn.sampled = n
	}
}

// scale runs one round of scaling decisions.
func (d *Dataplane) scale(now time.Time) {
	for fn := range d.all() {
		d.scaleFunction(fn, now)
	}
}

func (d *Dataplane) scaleFunction(fn *function, now time.Time) {
	v := fn.version()
	starting := d.starter.InFlight(v.cs)
	// A draining instance gets at least the time a request may take.
	drainFor := max(d.cfg.DrainTimeout, v.spec.RequestTimeout)

	fn.mu.Lock()
	if fn.removed {
		fn.mu.Unlock()
		return
	}
	var current, old []*instance // live, not draining
	var finished []*instance     // draining and done (or out of time)
	newReady := 0
	for _, in := range fn.instances {
		switch {
		case in.draining:
			if in.slots.InFlight() == 0 || now.Sub(in.drainSince) > drainFor {
				finished = append(finished, in)
			}
		case in.gen < v.gen:
			old = append(old, in)
		default:
			current = append(current, in)
			if in.inst.State() == lifecycle.Ready {
				newReady++
			}
		}
	}
	for _, in := range finished {
		delete(fn.instances, in.inst.ID)
	}

	var obs concurrency.Observation
	if fn.meter != nil {
		obs = fn.meter.Observation(now)
	}
	obs.Instances = len(current) + starting
	obs.InstanceLimit = v.spec.Concurrency
	obs.Queued = fn.queue.Len()
	if la := fn.lastActive.Load(); la != 0 {
		obs.LastActive = time.Unix(0, la)
	}
	// A custom policy is held to the spec's bounds too.
	want := min(max(fn.policy.Decide(now, obs).Desired, v.spec.MinInstances), v.spec.MaxInstances)

	// Rolling: old instances drain as new ones become Ready, keeping the
	// capacity the function needs (surge, not a cliff).
	var drain []*instance
	if keep := max(0, min(len(old), want-newReady)); len(old) > keep {
		slices.SortFunc(old, func(a, b *instance) int { return a.slots.InFlight() - b.slots.InFlight() })
		drain = append(drain, old[:len(old)-keep]...)
	}
	// Scale down: drain the excess, idlest first, among instances Ready
	// for at least ScaleDownDelay: an instance started for a burst is not
	// drained at the next decision only to be started again at the next
	// burst.
	if excess := len(current) + starting - want; excess > 0 && starting < excess {
		settled := make([]*instance, 0, len(current))
		for _, in := range current {
			if now.Sub(in.readyAt) >= d.cfg.ScaleDownDelay {
				settled = append(settled, in)
			}
		}
		slices.SortFunc(settled, func(a, b *instance) int { return a.slots.InFlight() - b.slots.InFlight() })
		drain = append(drain, settled[:min(excess-starting, len(settled))]...)
	}
	for _, in := range drain {
		in.draining, in.drainSince = true, now
	}
	fn.mu.Unlock()

	for _, in := range drain {
		d.router.Remove(now, in.inst, "scaled down")
		_ = in.inst.Transition(now, lifecycle.Draining, "scaled down")
	}
	for _, in := range finished {
		d.terminateLater(in.inst, "drained")
	}
	if missing := want - (len(current) + starting); missing > 0 {
		d.ensure(fn, v, starting+missing)
	}
}

// podGone reacts to a pod the provider reports deleted (e.g. its agent
// crashed): its instance leaves the routes at once, without waiting for
// health checks, and the scaler replaces it.
func (d *Dataplane) podGone(pod warmpool.Pod, now time.Time) {
	for fn := range d.all() {
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

// newMeter returns a meter with the configured windows; New validated them.
func (d *Dataplane) newMeter() *concurrency.Meter {
	m, err := concurrency.NewMeter(d.cfg.Meter)
	if err != nil {
		panic(err) // unreachable: New checked the configuration
	}
	return m
}
