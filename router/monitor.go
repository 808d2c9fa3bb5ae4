package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/lifecycle"
)

// Probe configures one pull health check schedule.
type Probe struct {
	// Period is the time between two checks of an instance.
	Period time.Duration
	// FailureThreshold is the number of failed checks in a row that
	// trips the probe.
	FailureThreshold int
	// Timeout bounds one check. Default 1 s (Kubernetes' default).
	Timeout time.Duration
}

func (p Probe) withDefaults(name string, period time.Duration) (Probe, error) {
	if p.Period == 0 {
		p.Period = period
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if p.Timeout == 0 {
		p.Timeout = time.Second
	}
	if p.Period < 0 || p.FailureThreshold < 1 || p.Timeout < 0 {
		return p, fmt.Errorf("%w: %s probe needs Period > 0, FailureThreshold ≥ 1, Timeout > 0; got %v, %d, %v",
			ErrInvalidConfig, name, p.Period, p.FailureThreshold, p.Timeout)
	}
	return p, nil
}

// HealthConfig configures a [HealthMonitor]. The probe defaults are those of
// ByteFaaS's dataplane and of Kubernetes' probes: readiness every 2 s and
// out after 3 failures, liveness every 45 s and replaced after 3.
type HealthConfig struct {
	// Checker is the pull check. Default: NewHTTPChecker(nil, 1 s), GET
	// /v1/ping.
	Checker HealthChecker
	// Source is the push side; nil means pull only.
	Source HealthSource
	// Readiness takes an instance out of the routes after
	// FailureThreshold failed checks in a row and lets it back after one
	// success, except in panic (see PanicThreshold). Default every 2 s,
	// 3 failures, 1 s timeout.
	Readiness Probe
	// Liveness gives up on an instance after FailureThreshold failed
	// liveness checks with no successful check in between: it is removed,
	// replaced (Hooks.Replace) and moved to Draining, except in panic
	// (see PanicThreshold). Default every 45 s, 3 failures, 1 s timeout.
	Liveness Probe
	// PanicThreshold is the share of a function's instances whose pull
	// checks may be failing at the same time before the monitor suspects
	// its own network rather than the instances, as Envoy's healthy panic
	// threshold does. A function with more than PanicThreshold × its
	// instances (rounded down) failing their latest check is in panic;
	// so is a node every one of whose routed instances (of any function)
	// is failing. In panic, failed pull checks of the instances concerned
	// neither take them out of the routes nor retire them, the ones pull
	// checks had taken out are let back (CauseHealthPanic), and their
	// failure streaks restart when the panic ends; push reports,
	// instance_reassigned answers and breakers act as usual. Default 0.5;
	// it must be below 1, and a negative value disables both rules.
	PanicThreshold float64
	// PanicMinInstances is the fewest routed instances a function or a
	// node must have for the panic rules to apply to it: a lone instance
	// failing is evidence against the instance, not against the checker.
	// Instances without a Node belong to no node. Default 2; must be ≥ 2.
	PanicMinInstances int
	// Interval is the period of the monitor's rounds: each round ticks
	// the router's breakers and runs the checks that are due. Default
	// 500 ms.
	Interval time.Duration
	// MaxConcurrentChecks bounds the checks in flight in one round.
	// Default 32.
	MaxConcurrentChecks int
	// Clock is the time source of the rounds and of pushed reports.
	// Default: the system clock.
	Clock clock.Clock
	// Logger receives check failures at debug level, push source
	// failures and entering or leaving a panic at warn level. Default:
	// discard.
	Logger *slog.Logger
}

// HealthMonitor runs a router's health checks and breaker clock: pull
// checks on a schedule, a push subscription, and [Router.Tick]. It is the
// only part of the package that owns goroutines and a clock;
// [HealthMonitor.Close] stops them. Without [HealthMonitor.Start], [HealthMonitor.RunOnce] drives it
// round by round on a virtual clock.
type HealthMonitor struct {
	r   *Router
	cfg HealthConfig
	log *slog.Logger

	round  sync.Mutex // serializes rounds
	probes map[*member]*probeState
	// The groups in panic after the latest round (panic.go); written
	// with round and pmu held, read with either.
	pmu                sync.Mutex
	fnPanic, nodePanic map[string]tally

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// probeState is one instance's pull-check bookkeeping; guarded by round.
type probeState struct {
	readyNext, liveNext   time.Time
	readyFails, liveFails int
	// failing: the latest check failed (not with a reassignment); out: the
	// readiness probe holds the instance out of the routes; gone: the
	// latest check answered that the instance was reassigned.
	failing, out, gone bool
}

// NewHealthMonitor returns a monitor for r; it starts nothing. It returns
// an error wrapping [ErrInvalidConfig] when a field of cfg is out of range.
func NewHealthMonitor(r *Router, cfg HealthConfig) (*HealthMonitor, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil router", ErrInvalidConfig)
	}
	var err error
	if cfg.Readiness, err = cfg.Readiness.withDefaults("readiness", 2*time.Second); err != nil {
		return nil, err
	}
	if cfg.Liveness, err = cfg.Liveness.withDefaults("liveness", 45*time.Second); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.MaxConcurrentChecks == 0 {
		cfg.MaxConcurrentChecks = 32
	}
	if cfg.Interval < 0 || cfg.MaxConcurrentChecks < 1 {
		return nil, fmt.Errorf("%w: Interval must be > 0 and MaxConcurrentChecks ≥ 1, got %v and %d",
			ErrInvalidConfig, cfg.Interval, cfg.MaxConcurrentChecks)
	}
	if cfg.PanicThreshold == 0 {
		cfg.PanicThreshold = 0.5
	}
	if cfg.PanicMinInstances == 0 {
		cfg.PanicMinInstances = 2
	}
	if !(cfg.PanicThreshold < 1) || cfg.PanicMinInstances < 2 {
		return nil, fmt.Errorf("%w: PanicThreshold must be < 1 (negative: never panic) and PanicMinInstances ≥ 2, got %v and %d",
			ErrInvalidConfig, cfg.PanicThreshold, cfg.PanicMinInstances)
	}
	if cfg.Checker == nil {
		cfg.Checker = NewHTTPChecker(nil, cfg.Readiness.Timeout)
	}
	cfg.Clock = clock.Or(cfg.Clock)
	h := &HealthMonitor{r: r, cfg: cfg, log: cfg.Logger, probes: make(map[*member]*probeState)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// Start starts the monitor's goroutines: one that runs a round every
// Interval, and one that watches the push source when there is one. It
// returns [ErrClosed] after Close and an error when already started.
func (h *HealthMonitor) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrClosed
	case h.started:
		return errors.New("router: health monitor already started")
	}
	h.started = true
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go h.loop(ctx)
	if h.cfg.Source != nil {
		h.wg.Add(1)
		go h.watch(ctx)
	}
	return nil
}

// Close stops the goroutines and waits for them, cancelling the checks in
// flight, and closes the default checker's idle connections. It is
// idempotent.
func (h *HealthMonitor) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	if h.cancel != nil {
		h.cancel()
	}
	h.mu.Unlock()
	h.wg.Wait()
	if c, ok := h.cfg.Checker.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

func (h *HealthMonitor) loop(ctx context.Context) {
	defer h.wg.Done()
	t := h.cfg.Clock.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			h.RunOnce(ctx, now)
		}
	}
}

// watch keeps a push subscription open; when the source fails it waits a
// readiness period and subscribes again.
func (h *HealthMonitor) watch(ctx context.Context) {
	defer h.wg.Done()
	report := func(rep HealthReport) {
		if err := h.r.ReportHealth(h.cfg.Clock.Now(), rep); err != nil {
			h.log.Debug("health report for an unknown instance", "instance", rep.InstanceID)
		}
	}
	for {
		err := h.cfg.Source.Watch(ctx, report)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("health push subscription failed; resubscribing", "err", err, "after", h.cfg.Readiness.Period)
		t := h.cfg.Clock.NewTicker(h.cfg.Readiness.Period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
			t.Stop()
		}
	}
}

// RunOnce runs one round at now: it ticks the router's breakers, runs the
// pull checks that are due (at most MaxConcurrentChecks at once, each bound
// by its probe's timeout and by ctx) and applies their results at now. It
// returns when every check of the round has ended. The running monitor
// calls it on every tick; a simulator or a test calls it directly.
func (h *HealthMonitor) RunOnce(ctx context.Context, now time.Time) {
	h.round.Lock()
	defer h.round.Unlock()
	h.r.tick(now)

	type check struct {
		m           *member
		st          *probeState
		ready, live bool
		err         error
		timeout     time.Duration
	}
	members := h.r.members()
	present := make(map[*member]bool, len(members))
	var due []*check
	for _, m := range members {
		present[m] = true
		st := h.probes[m]
		if st == nil {
			st = &probeState{readyNext: now.Add(h.cfg.Readiness.Period), liveNext: now.Add(h.cfg.Liveness.Period)}
			h.probes[m] = st
		}
		c := &check{m: m, st: st, ready: !now.Before(st.readyNext), live: !now.Before(st.liveNext)}
		if c.ready {
			c.timeout = h.cfg.Readiness.Timeout
		}
		if c.live {
			c.timeout = max(c.timeout, h.cfg.Liveness.Timeout)
		}
		if c.ready || c.live {
			due = append(due, c)
		}
	}
	for m := range h.probes {
		if !present[m] {
			delete(h.probes, m)
		}
	}
	// In a stable order, so that a simulated round replays the same way.
	slices.SortFunc(due, func(a, b *check) int { return strings.Compare(a.m.inst.ID, b.m.inst.ID) })

	sem := make(chan struct{}, h.cfg.MaxConcurrentChecks)
	var wg sync.WaitGroup
	for _, c := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			c.err = h.cfg.Checker.Check(cctx, c.m.inst)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // the monitor is closing: the checks were cut short, not failed
	}
	for _, c := range due {
		c.st.gone = errors.Is(c.err, lifecycle.CodeInstanceReassigned)
		c.st.failing = c.err != nil && !c.st.gone
	}
	// The round's verdicts are judged together before any is acted on, so
	// that a mass failure takes out nothing rather than the first few.
	h.assess(members)
	for _, c := range due {
		h.apply(now, c.m, c.st, c.ready, c.live, c.err)
	}
	h.letBack(now, members)
}

// apply records one check's result; h.round held.
func (h *HealthMonitor) apply(now time.Time, m *member, st *probeState, ready, live bool, err error) {
	inst := m.inst
	if ready {
		st.readyNext = now.Add(h.cfg.Readiness.Period)
	}
	if live {
		st.liveNext = now.Add(h.cfg.Liveness.Period)
	}
	if err == nil {
		st.readyFails, st.liveFails = 0, 0
		if ready {
			st.out = false
			h.r.setHealth(now, m, healthPull, true, CauseHealthPull, "readiness check passed")
		}
		return
	}
	h.log.Debug("health check failed", "instance", inst.ID, "function", inst.FunctionID, "err", err)
	if errors.Is(err, lifecycle.CodeInstanceReassigned) {
		// An agent's answer, not a network symptom: acted on even in panic.
		h.r.retire(now, m, CauseReassigned, err.Error(), false)
		return
	}
	if h.shielded(m) {
		// The failure is held against the checker, not the instance; so
		// is the streak that led into the panic.
		st.readyFails, st.liveFails = 0, 0
		return
	}
	if ready {
		st.readyFails++
		if st.readyFails >= h.cfg.Readiness.FailureThreshold {
			st.out = true
			h.r.setHealth(now, m, healthPull, false, CauseHealthPull,
				fmt.Sprintf("readiness failed %d times: %v", st.readyFails, err))
		}
	}
	if live {
		st.liveFails++
		if st.liveFails >= h.cfg.Liveness.FailureThreshold {
			h.r.retire(now, m, CauseLiveness, fmt.Sprintf("liveness failed %d times: %v", st.liveFails, err), true)
		}
	}
}
