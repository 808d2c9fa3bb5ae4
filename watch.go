package faas

import (
	"context"
	"errors"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/router"
)

// agentWatcher is what the Dataplane needs of Config.Agent to follow an
// instance: the agent's watch long poll. *lifecycle.Client has it; an
// agent client without it leaves the instance to health checks and to the
// answers of its agent.
type agentWatcher interface {
	Watch(ctx context.Context, ctl lifecycle.Control, known string, wait time.Duration) (lifecycle.WatchResponse, error)
}

// watch holds a long poll on inst's agent for as long as inst is routed,
// so that the death of its function process takes it out of the routes
// and starts a replacement at once, before any request or health check
// finds out. It runs in the background; unwatch (the instance leaving
// Ready for good) and Close stop it.
func (d *Dataplane) watch(inst *lifecycle.Instance) {
	w, ok := d.cfg.Agent.(agentWatcher)
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

// watchRetry bounds the pause between two failed watch calls: an agent
// that cannot be reached is the health checks' business, and a watch that
// fails at once must not spin.
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
			_ = d.router.ReportHealth(time.Now(), router.HealthReport{InstanceID: inst.ID, Exited: true, Reason: "function process exited: " + resp.Exit})
			return
		case err == nil:
			// Another function, or none: the address no longer serves
			// this instance.
			_ = d.router.ReportHealth(time.Now(), router.HealthReport{InstanceID: inst.ID, Reassigned: true, Reason: "agent reports " + resp.State + " " + resp.FunctionID})
			return
		case errors.Is(err, lifecycle.ErrUnauthorized), errors.Is(err, lifecycle.ErrBadRequest):
			// An agent that does not take our watch (another version, a
			// custom agent): health checks cover it.
			d.log.Debug("agent does not support watching", "instance", inst.ID, "err", err)
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(pause*2, watchRetryMax)
	}
}
