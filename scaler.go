package faas

import (
	"strconv"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/concurrency"
	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/warmpool"
)

// scaleLoop is the Dataplane's control loop, on its clock: it samples the
// demand of every function for its meter at every tick of sample, runs a
// round of decisions (scale) at every tick of scale, and drops the
// instances whose pods the provider reports gone. Start makes the tickers,
// so that time that passes once Start returned is seen by the loop.
func (d *Dataplane) scaleLoop(sample, scale clock.Ticker) {
	defer sample.Stop()
	defer scale.Stop()
	var watch <-chan warmpool.PodEvent
	watcher, _ := d.cfg.Pods.(warmpool.PodWatcher)
	rewatch := d.clock.NewTimer(0)
	defer rewatch.Stop()
	if watcher == nil {
		rewatch.Stop()
	}
	for {
		select {
		case <-d.ctx.Done():
			return
		case now := <-sample.C():
			d.sample(now)
		case now := <-scale.C():
			d.sample(now)
			d.scale(now)
		case <-rewatch.C():
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
				d.podGone(ev.Pod)
			}
		}
	}
}

// sample feeds each function's demand (requests waiting or running) to its
// meter; idle functions that were idle at the last sample are skipped.
func (d *Dataplane) sample(now time.Time) {
	for fn := range d.funcs.All() {
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
	for fn := range d.funcs.All() {
		d.scaleFunction(fn, now)
	}
	d.rounds.Add(1)
}

// scaleFunction asks fn's policy how many instances it should have and
// applies concurrency.PlanRound's answer (the same as the simulator's):
// drain the old generation as new instances are Ready, drain the settled
// excess idlest first, start what is missing; instances drained earlier
// and now idle (or out of time) are terminated.
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
	var live, finished []*instance
	var replicas []concurrency.Replica
	current, steady := 0, 0
	for _, in := range fn.instances {
		if in.draining {
			if in.slots.InFlight() == 0 || now.Sub(in.drainSince) > drainFor {
				finished = append(finished, in)
			}
			continue
		}
		r := concurrency.Replica{
			Current:  in.gen >= v.gen,
			Ready:    in.inst.State() == lifecycle.Ready,
			InFlight: in.slots.InFlight(),
			ReadyAt:  in.readyAt,
			LastUsed: in.readyAt,
			Steady:   in.steady,
		}
		if r.Current {
			current++
			if in.steady {
				steady++
			}
		}
		live = append(live, in)
		replicas = append(replicas, r)
	}
	for _, in := range finished {
		delete(fn.instances, in.inst.ID)
	}

	var obs concurrency.Observation
	if fn.meter != nil {
		obs = fn.meter.Observation(now)
	}
	obs.Instances = current + starting
	obs.InstanceLimit = v.spec.Concurrency
	obs.Queued = fn.queue.Len()
	if la := fn.lastActive.Load(); la != 0 {
		obs.LastActive = time.Unix(0, la)
	}
	// A custom policy is held to the spec's bounds too.
	want := min(max(fn.policy.Decide(now, obs).Desired, v.spec.MinInstances), v.spec.MaxInstances)
	plan := concurrency.PlanRound(now, want, starting, replicas, d.cfg.Scaler.ScaleDownDelay)
	drain := make([]*instance, len(plan.Drain))
	for i, k := range plan.Drain {
		drain[i] = live[k]
		drain[i].draining, drain[i].drainSince = true, now
	}
	fn.mu.Unlock()

	for _, in := range drain {
		reason := "scaled down"
		if in.gen < v.gen {
			reason = "replaced by generation " + strconv.FormatUint(v.gen, 10)
		}
		d.router.Remove(now, in.inst, reason)
		_ = in.inst.Transition(now, lifecycle.Draining, reason)
	}
	for _, in := range finished {
		d.terminateLater(in.inst, "drained")
	}
	if plan.Start > starting {
		d.ensure(fn, v, plan.Start)
	}
	// Steady instances replace burst ones in the background, up to the
	// spec's count while the policy wants that many.
	if steady < min(v.spec.SteadyInstances, want) {
		d.startSteady(fn, v, now)
	}
}

// startSteady starts one steady instance of fn (a cold start on a pod
// created for it), unless one is starting or the last ones failed
// recently (backoff: 1 s, doubling, up to a minute).
func (d *Dataplane) startSteady(fn *function, v *version, now time.Time) {
	if now.UnixNano() < fn.steadyRetryAt.Load() || !fn.steadyStarting.CompareAndSwap(false, true) {
		return
	}
	started := d.spawn(func() {
		defer fn.steadyStarting.Store(false)
		_, err := d.starter.StartDedicated(d.ctx, d.cfg.Pods, v.cs)
		if err == nil {
			fn.steadyFailures.Store(0)
			return
		}
		if d.ctx.Err() != nil {
			return
		}
		n := fn.steadyFailures.Add(1)
		wait := min(time.Second<<min(n-1, 6), time.Minute)
		fn.steadyRetryAt.Store(d.clock.Now().Add(wait).UnixNano())
		d.log.Warn("a steady instance failed to start", "function", fn.id, "retry_in", wait, "err", err)
	})
	if !started {
		fn.steadyStarting.Store(false)
	}
}

// newMeter returns a meter with the configured windows; New validated them.
func (d *Dataplane) newMeter() *concurrency.Meter {
	m, err := concurrency.NewMeter(d.cfg.Scaler.Meter)
	if err != nil {
		panic(err) // unreachable: New checked the configuration
	}
	return m
}
