package warmpool

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/faasplane/faas/clock"
)

// RuntimeConfig configures the pool of one runtime.
type RuntimeConfig struct {
	// Min and Max bound the pool's target size (the default sizing
	// policy's clamp): 0 <= Min <= Max, Max > 0.
	Min, Max int
	// Labels are added to the runtime's new pods.
	Labels map[string]string
}

// Config tunes a [Manager]. Only Runtimes is required; every other zero
// field takes its default.
type Config struct {
	// ID names the manager among the members sharing a pod population:
	// unique among them and stable across restarts (a node name), so that
	// a restarted manager gets back the same shard of pods. Its leases are
	// held in the name of an incarnation of it ([Manager.Holder]), so a
	// restart never inherits the leases of the process it replaces: it
	// adopts its pods once those leases lapse. Default "warmpool".
	ID string
	// Addr and Weight are published with the manager's heartbeats in the
	// Membership: where the other members reach it (for a Dataplane, its
	// gateway) and its share of the pods relative to the others (default
	// 1).
	Addr   string
	Weight float64
	// Runtimes are the pools, by runtime name. At least one is required.
	Runtimes map[string]RuntimeConfig
	// Sizing returns the sizing policy of a runtime's pool. Default: an
	// [EWMASizing] with the runtime's Min and Max and default settings.
	Sizing func(runtime string, rc RuntimeConfig) (SizingPolicy, error)
	// MaxParallelCreates bounds the pod creations in flight, all
	// runtimes together. Default 4.
	MaxParallelCreates int
	// CreateTimeout bounds one pod creation. Default 2 minutes.
	CreateTimeout time.Duration
	// Backoff spaces creation retries after provider errors, per runtime.
	// Defaults: see [Backoff].
	Backoff Backoff
	// Prober checks idle pods. Default: an [HTTPProber] (GET /v1/ping).
	Prober Prober
	// ProbeInterval is how often each idle pod is probed. Default 10
	// seconds; negative disables probing, including the probe of a pod
	// adopted from another manager before it joins the pool.
	ProbeInterval time.Duration
	// MaxParallelProbes bounds the probes in flight. Default 8.
	MaxParallelProbes int
	// NodeHealth says which nodes may receive cold starts; Take never
	// returns a pod on an unhealthy node. Default: every node is healthy.
	NodeHealth NodeHealth
	// Leases grants the leases on pods. Default: a private
	// [MemLeaseStore] on Clock. Managers that share a pod population must
	// share a store.
	Leases LeaseStore
	// Membership tracks the live managers that share the pod population;
	// each owns the pods that sharding assigns it among them. Default:
	// this manager alone.
	Membership Membership
	// LeaseTTL is the lifetime of a lease (and of a heartbeat) unless
	// renewed. Default 15 seconds.
	LeaseTTL time.Duration
	// RenewInterval is the period of the upkeep round ([Manager.Tick]):
	// heartbeat, lease renewal, handover and adoption, sizing, probes.
	// Default LeaseTTL/3; it must be shorter than LeaseTTL.
	RenewInterval time.Duration
	// KeepIdleOnClose makes Close release the idle pods' leases for other
	// managers to adopt, instead of deleting the pods (the default).
	KeepIdleOnClose bool
	// RefillDelay delays the replenishment that a Take triggers, so that
	// creating the replacement pod does not compete for the node's CPU
	// with the cold start that took the pod (on a 2-core node a pod's
	// start costs a cold start about 14 ms). A Take that finds no idle pod
	// still triggers a creation at once. Default 0: replenish at once.
	RefillDelay time.Duration
	// CloseTimeout bounds the deletions and releases of Close. Default 30
	// seconds.
	CloseTimeout time.Duration
	// Manual starts no goroutine: nothing happens unless the caller calls
	// [Manager.Tick], which then runs creations and probes one after
	// another before it returns. Simulations and tests on a virtual clock
	// use it; production code does not.
	Manual bool
	// Clock is the clock of every decision (leases, backoff, sizing) and
	// of the background loop's timers. Default: the system clock.
	Clock clock.Clock
	// Seed seeds the randomness of pod names and backoff jitter; 0 means
	// a random seed.
	Seed uint64
	// Logger receives the manager's warnings. nil discards them.
	Logger *slog.Logger
}

func (cfg *Config) withDefaults() error {
	if len(cfg.Runtimes) == 0 {
		return errors.New("warmpool: Config.Runtimes needs at least one runtime")
	}
	for rt, rc := range cfg.Runtimes {
		if rt == "" {
			return errors.New("warmpool: Config.Runtimes has an empty runtime name")
		}
		if rc.Min < 0 || rc.Max <= 0 || rc.Min > rc.Max {
			return fmt.Errorf("warmpool: runtime %q: want 0 <= Min <= Max and Max > 0, got Min=%d Max=%d", rt, rc.Min, rc.Max)
		}
	}
	if cfg.ID == "" {
		cfg.ID = "warmpool"
	}
	if cfg.Sizing == nil {
		cfg.Sizing = func(_ string, rc RuntimeConfig) (SizingPolicy, error) {
			return NewEWMASizing(EWMASizingConfig{Min: rc.Min, Max: rc.Max})
		}
	}
	cfg.MaxParallelCreates = cmp.Or(cfg.MaxParallelCreates, 4)
	cfg.MaxParallelProbes = cmp.Or(cfg.MaxParallelProbes, 8)
	cfg.CreateTimeout = cmp.Or(cfg.CreateTimeout, 2*time.Minute)
	cfg.ProbeInterval = cmp.Or(cfg.ProbeInterval, 10*time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 15*time.Second)
	cfg.RenewInterval = cmp.Or(cfg.RenewInterval, cfg.LeaseTTL/3)
	cfg.CloseTimeout = cmp.Or(cfg.CloseTimeout, 30*time.Second)
	switch {
	case cfg.MaxParallelCreates < 0 || cfg.MaxParallelProbes < 0:
		return errors.New("warmpool: MaxParallelCreates and MaxParallelProbes must be > 0")
	case cfg.CreateTimeout < 0 || cfg.LeaseTTL < 0 || cfg.RenewInterval < 0 || cfg.CloseTimeout < 0 || cfg.RefillDelay < 0:
		return errors.New("warmpool: CreateTimeout, LeaseTTL, RenewInterval, CloseTimeout and RefillDelay must not be negative")
	case cfg.RenewInterval >= cfg.LeaseTTL:
		return fmt.Errorf("warmpool: RenewInterval (%v) must be shorter than LeaseTTL (%v)", cfg.RenewInterval, cfg.LeaseTTL)
	}
	if _, err := cfg.Backoff.withDefaults(); err != nil {
		return err
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Weight < 0 {
		return errors.New("warmpool: Weight must not be negative")
	}
	if cfg.Prober == nil {
		cfg.Prober = &HTTPProber{}
	}
	if cfg.NodeHealth == nil {
		cfg.NodeHealth = allHealthy{}
	}
	if cfg.Leases == nil {
		cfg.Leases = NewMemLeaseStore(cfg.Clock)
	}
	if cfg.Membership == nil {
		cfg.Membership = soloMembership{self: cfg.self()}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// self is the manager as a member.
func (cfg *Config) self() Member {
	return Member{ID: cfg.ID, Addr: cfg.Addr, Weight: cmp.Or(cfg.Weight, 1)}
}
