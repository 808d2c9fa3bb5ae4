// Package policytest shows how a platform team tests a scaling policy of
// its own against faasplane's default in an ordinary go test: the policy
// below is a concurrency.ScalingPolicy, the very interface a
// faas.Dataplane is configured with, and prewarm_test.go replays a
// synthetic trace through it and through the default (KPA with a 10-minute
// keep-alive) with faastest, then asserts that it makes fewer cold starts
// at no more than a stated extra cost in instance-seconds.
//
// The policy, Prewarm, follows the hybrid histogram policy of Shahrad et
// al. ("Serverless in the Wild", USENIX ATC 2020): a function that is
// invoked at regular intervals (a timer, a periodic job) is scaled to zero
// right after each invocation and pre-warmed shortly before the next one
// is due, instead of being kept alive for a fixed time that is either too
// short (every call cold) or too long (paid idle time). Functions whose
// idle times are irregular keep the fixed keep-alive. While requests are
// in flight the KPA decides, so bursts scale as usual. It is the
// smallest version of the idea a team would write first; the full policy
// of the paper (a histogram of idle times, percentile windows, the
// representativeness check) ships as concurrency.Hybrid, and
// examples/keepalive-lab compares both kinds on the bundled traces.
package policytest

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/faasplane/faas/concurrency"
)

// PrewarmConfig configures a [Prewarm] policy. Zero fields take the
// documented defaults.
type PrewarmConfig struct {
	// KPA configures the policy used while requests are in flight; its
	// KeepAlive is the fixed keep-alive of irregular functions (default
	// concurrency.DefaultKeepAlive).
	KPA concurrency.KPAConfig
	// History is the number of recent idle times remembered. Default 8.
	History int
	// MinSamples is the number of idle times seen before a function can
	// count as regular. Default 3.
	MinSamples int
	// MaxSpread is the largest (longest − shortest) / median of the
	// remembered idle times for which a function counts as regular.
	// Default 0.1.
	MaxSpread float64
	// Margin is how long before the earliest expected invocation the
	// instance is started, and how long after the latest one it is kept:
	// it must cover a cold start and a decision interval. Default 30 s.
	Margin time.Duration
	// MinGap is the shortest idle time that counts as one; shorter ones
	// are pauses within a busy period. Default 10 s.
	MinGap time.Duration
}

// Prewarm is a keep-alive policy that pre-warms regular functions just
// before their next expected invocation. Like every ScalingPolicy it is a
// deterministic state machine driven by the observations it is given; use
// one per function. It is not safe for concurrent use (the dataplane and
// the simulator call a function's policy from one goroutine at a time).
type Prewarm struct {
	cfg       PrewarmConfig
	keepAlive time.Duration
	kpa       *concurrency.KPA
	last      time.Time       // the LastActive seen at the previous decision
	gaps      []time.Duration // recent idle times, oldest first
}

// NewPrewarm returns a Prewarm policy, or an error for a setting out of
// range.
func NewPrewarm(cfg PrewarmConfig) (*Prewarm, error) {
	cfg.History = cmp.Or(cfg.History, 8)
	cfg.MinSamples = cmp.Or(cfg.MinSamples, 3)
	cfg.MaxSpread = cmp.Or(cfg.MaxSpread, 0.1)
	cfg.Margin = cmp.Or(cfg.Margin, 30*time.Second)
	cfg.MinGap = cmp.Or(cfg.MinGap, 10*time.Second)
	if cfg.History < cfg.MinSamples || cfg.MinSamples < 1 || cfg.MaxSpread < 0 || cfg.Margin < 0 || cfg.MinGap < 0 {
		return nil, fmt.Errorf("policytest: invalid prewarm config %+v", cfg)
	}
	keepAlive := cmp.Or(cfg.KPA.KeepAlive, concurrency.DefaultKeepAlive)
	inner := cfg.KPA
	inner.KeepAlive = -1 // idle instances are this policy's business
	kpa, err := concurrency.NewKPA(inner)
	if err != nil {
		return nil, err
	}
	return &Prewarm{cfg: cfg, keepAlive: max(keepAlive, 0), kpa: kpa}, nil
}

// Decide implements concurrency.ScalingPolicy.
func (p *Prewarm) Decide(now time.Time, o concurrency.Observation) concurrency.Decision {
	p.learn(o.LastActive)
	d := p.kpa.Decide(now, o)
	if o.InFlight > 0 || o.Queued > 0 || o.LastActive.IsZero() || d.Desired > 0 {
		return d
	}
	idle := now.Sub(o.LastActive)
	if lo, hi, ok := p.window(); ok {
		// Regular: an instance only around the next expected invocation.
		if idle >= lo-p.cfg.Margin && idle <= hi+p.cfg.Margin {
			d.Desired = 1
		}
	} else if idle < p.keepAlive {
		// Irregular: the fixed keep-alive.
		d.Desired = 1
	}
	if p.cfg.KPA.MaxInstances > 0 {
		d.Desired = min(d.Desired, p.cfg.KPA.MaxInstances)
	}
	return d
}

// learn records an idle time when the function became active again since
// the previous decision after a pause of at least MinGap. The idle time
// runs from the end of one activity to the end of the next, which for
// short invocations is the time between them.
func (p *Prewarm) learn(lastActive time.Time) {
	if lastActive.IsZero() || !lastActive.After(p.last) {
		return
	}
	if gap := lastActive.Sub(p.last); !p.last.IsZero() && gap >= p.cfg.MinGap {
		if len(p.gaps) == p.cfg.History {
			p.gaps = slices.Delete(p.gaps, 0, 1)
		}
		p.gaps = append(p.gaps, gap)
	}
	p.last = lastActive
}

// window returns the shortest and longest remembered idle times when the
// function is regular.
func (p *Prewarm) window() (lo, hi time.Duration, ok bool) {
	if len(p.gaps) < p.cfg.MinSamples {
		return 0, 0, false
	}
	sorted := slices.Sorted(slices.Values(p.gaps))
	lo, hi = sorted[0], sorted[len(sorted)-1]
	median := sorted[len(sorted)/2]
	if float64(hi-lo) > p.cfg.MaxSpread*float64(median) {
		return 0, 0, false
	}
	return lo, hi, true
}

var _ concurrency.ScalingPolicy = (*Prewarm)(nil)
