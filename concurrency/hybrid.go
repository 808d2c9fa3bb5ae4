package concurrency

import (
	"cmp"
	"fmt"
	"math"
	"sync"
	"time"
)

// Defaults of [HybridConfig], those of the hybrid histogram policy of
// Shahrad et al., "Serverless in the Wild" (USENIX ATC 2020), except
// DefaultHybridMinSamples, which is this implementation's.
const (
	// DefaultHybridRange is the histogram's range: idle times up to 4
	// hours are binned, longer ones are out of bounds.
	DefaultHybridRange = 4 * time.Hour
	// DefaultHybridBin is the histogram's resolution.
	DefaultHybridBin = time.Minute
	// DefaultHybridHead and DefaultHybridTail are the percentiles of the
	// idle times that set the pre-warm and the keep-alive window.
	DefaultHybridHead = 5.0
	DefaultHybridTail = 99.0
	// DefaultHybridMargin widens both windows by 10 %: the pre-warm
	// starts 10 % earlier than the head, the keep-alive ends 10 % later
	// than the tail.
	DefaultHybridMargin = 0.1
	// DefaultHybridMinCV is the coefficient of variation of the bin
	// counts below which the histogram is too flat to predict anything.
	DefaultHybridMinCV = 2.0
	// DefaultHybridMaxOOB is the share of idle times out of bounds above
	// which the histogram does not describe the function.
	DefaultHybridMaxOOB = 0.5
	// DefaultHybridMinSamples is the number of idle times seen before
	// the histogram is trusted.
	DefaultHybridMinSamples = 3
)

// HybridConfig configures a [Hybrid] policy. Zero fields take the
// defaults above.
type HybridConfig struct {
	// Range and Bin shape the histogram of idle times: Range/Bin bins of
	// width Bin (at most 100,000). Defaults 4 h and 1 min.
	Range, Bin time.Duration
	// Head and Tail are the percentiles (in (0, 100)) of the binned idle
	// times at which the pre-warm and the keep-alive window end; Head <
	// Tail. Defaults 5 and 99.
	Head, Tail float64
	// Margin widens both windows by this fraction, in [0, 1). Default
	// 0.1; negative means none.
	Margin float64
	// MinCV is the coefficient of variation of the bin counts below
	// which the histogram is not representative. Default 2; negative
	// means any.
	MinCV float64
	// MaxOOB is the share of idle times longer than Range above which
	// the histogram is not used, in (0, 1]. Default 0.5.
	MaxOOB float64
	// MinSamples is the number of idle times recorded before the
	// histogram is used. Default 3.
	MinSamples int
	// Fallback is the fixed keep-alive used while the histogram is not
	// used (too few samples, not representative, out of bounds). Default
	// Range, the paper's standard keep-alive; negative means none.
	Fallback time.Duration
	// KPA configures the scaling while requests are in flight or queued;
	// its KeepAlive is ignored. MinInstances and MaxInstances bound every
	// answer.
	KPA KPAConfig
}

// Hybrid is the hybrid histogram keep-alive and pre-warm policy of
// "Serverless in the Wild": it learns the distribution of the function's
// idle times (from the end of one activity to the start of the next) in a
// histogram, and after each activity unloads the function until the
// head percentile of that distribution (less a margin) is reached,
// pre-warms an instance then, and keeps it until the tail percentile (plus
// a margin). A function invoked every 20 minutes thus costs a few minutes
// of idle instance around each call instead of a 10-minute keep-alive and
// a cold start each time. When the histogram cannot be trusted (too few
// idle times, bin counts too evenly spread, too many idle times beyond
// its range) the policy falls back to a fixed keep-alive; the paper then
// forecasts with ARIMA, which this implementation does not. While
// requests are in flight or queued it scales like the [KPA]. Use one per
// function; it is safe for concurrent use.
type Hybrid struct {
	cfg HybridConfig
	kpa *KPA

	mu          sync.Mutex
	counts      []uint32 // per bin; allocated at the first idle time
	binned, oob int64
	firstSeen   time.Time
	seen        bool
	idleFrom    time.Time // the LastActive of the previous decision while idle
	wasIdle     bool
	dirty       bool
	win         hybridWindows
}

// hybridWindows are the windows the histogram gives, since the last idle
// time recorded.
type hybridWindows struct {
	ok              bool // the histogram is used
	prewarm, loaded time.Duration
}

// NewHybrid returns a hybrid histogram policy, or an error wrapping
// [ErrInvalidConfig] for a setting out of range.
func NewHybrid(cfg HybridConfig) (*Hybrid, error) {
	cfg.Range = cmp.Or(cfg.Range, DefaultHybridRange)
	cfg.Bin = cmp.Or(cfg.Bin, DefaultHybridBin)
	cfg.Head = cmp.Or(cfg.Head, DefaultHybridHead)
	cfg.Tail = cmp.Or(cfg.Tail, DefaultHybridTail)
	cfg.Margin = max(cmp.Or(cfg.Margin, DefaultHybridMargin), 0)
	cfg.MinCV = cmp.Or(cfg.MinCV, DefaultHybridMinCV)
	cfg.MaxOOB = cmp.Or(cfg.MaxOOB, DefaultHybridMaxOOB)
	cfg.MinSamples = cmp.Or(cfg.MinSamples, DefaultHybridMinSamples)
	cfg.Fallback = max(cmp.Or(cfg.Fallback, cfg.Range), 0)
	bad := func(format string, args ...any) (*Hybrid, error) {
		return nil, fmt.Errorf("%w: hybrid policy: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg.Bin < 0 || cfg.Range < cfg.Bin || cfg.Range/cfg.Bin > 100_000:
		return bad("Range %v and Bin %v: want 0 < Bin <= Range, at most 100,000 bins", cfg.Range, cfg.Bin)
	case !(cfg.Head > 0 && cfg.Head < cfg.Tail && cfg.Tail < 100):
		return bad("percentiles Head %v, Tail %v: want 0 < Head < Tail < 100", cfg.Head, cfg.Tail)
	case !(cfg.Margin < 1):
		return bad("Margin %v not in [0, 1)", cfg.Margin)
	case !(cfg.MaxOOB > 0 && cfg.MaxOOB <= 1):
		return bad("MaxOOB %v not in (0, 1]", cfg.MaxOOB)
	case cfg.MinSamples < 1 || math.IsNaN(cfg.MinCV):
		return bad("MinSamples %d < 1 or MinCV NaN", cfg.MinSamples)
	}
	inner := cfg.KPA
	inner.KeepAlive = -1
	kpa, err := NewKPA(inner)
	if err != nil {
		return nil, fmt.Errorf("hybrid policy: %w", err)
	}
	return &Hybrid{cfg: cfg, kpa: kpa}, nil
}

// Windows returns what the histogram predicts now: the pre-warm window
// (how long after an activity the function stays unloaded) and the end of
// the keep-alive window (how long after an activity a pre-warmed instance
// stays), and whether the histogram is used at all (false: the fixed
// Fallback keep-alive applies).
func (p *Hybrid) Windows() (prewarm, keepAliveEnd time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.windowsLocked()
	return w.prewarm, w.loaded, w.ok
}

// Samples returns the number of idle times recorded: within the range,
// and beyond it.
func (p *Hybrid) Samples() (binned, outOfBounds int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.binned, p.oob
}

// Decide implements [ScalingPolicy].
func (p *Hybrid) Decide(now time.Time, o Observation) Decision {
	d := p.kpa.Decide(now, o)
	p.mu.Lock()
	since := p.learnLocked(now, o)
	w := p.windowsLocked()
	p.mu.Unlock()
	if o.InFlight > 0 || o.Queued > 0 {
		return d
	}
	idle := now.Sub(since)
	floor := Decision{Desired: p.cfg.KPA.MinInstances}
	switch {
	case !w.ok && idle >= p.cfg.Fallback, w.ok && idle >= w.loaded:
		d = floor // past the keep-alive
	case w.ok && idle < w.prewarm:
		d = floor // unloaded until the pre-warm
	case w.ok || o.Instances > 0:
		d.Desired = max(d.Desired, 1) // kept, or pre-warmed
	}
	return p.bound(d)
}

// learnLocked records an idle time when the function was idle at the
// previous decision and has been active since, and returns when the
// current idle period began.
func (p *Hybrid) learnLocked(now time.Time, o Observation) time.Time {
	if !p.seen {
		p.seen, p.firstSeen = true, now
	}
	busy := o.InFlight > 0 || o.Queued > 0
	if p.wasIdle && !o.LastActive.IsZero() && o.LastActive.After(p.idleFrom) && !p.idleFrom.IsZero() {
		// Active again since: from the end of the previous activity to
		// the last instant of this one (for short requests, to its
		// start).
		p.record(o.LastActive.Sub(p.idleFrom))
	}
	p.wasIdle = !busy
	if !busy {
		p.idleFrom = o.LastActive
	}
	if o.LastActive.IsZero() {
		return p.firstSeen
	}
	return o.LastActive
}

func (p *Hybrid) record(it time.Duration) {
	if it >= p.cfg.Range {
		p.oob++
	} else {
		if p.counts == nil {
			p.counts = make([]uint32, p.cfg.Range/p.cfg.Bin)
		}
		if i := int(it / p.cfg.Bin); p.counts[i] < math.MaxUint32 {
			p.counts[i]++
		}
		p.binned++
	}
	p.dirty = true
}

// windowsLocked recomputes the windows after a new idle time: the head
// percentile rounded down to its bin's start less the margin, the tail
// rounded up to its bin's end plus the margin.
func (p *Hybrid) windowsLocked() hybridWindows {
	if !p.dirty {
		return p.win
	}
	p.dirty = false
	p.win = hybridWindows{}
	total := p.binned + p.oob
	if p.binned == 0 || total < int64(p.cfg.MinSamples) || float64(p.oob) > p.cfg.MaxOOB*float64(total) {
		return p.win
	}
	n := float64(len(p.counts))
	mean := float64(p.binned) / n
	var sq float64
	for _, c := range p.counts {
		sq += (float64(c) - mean) * (float64(c) - mean)
	}
	if cv := math.Sqrt(sq/n) / mean; cv < p.cfg.MinCV {
		return p.win
	}
	head := rankBin(p.counts, p.binned, p.cfg.Head)
	tail := rankBin(p.counts, p.binned, p.cfg.Tail)
	bin := p.cfg.Bin
	p.win = hybridWindows{
		ok:      true,
		prewarm: time.Duration(float64(time.Duration(head)*bin) * (1 - p.cfg.Margin)),
		loaded:  time.Duration(float64(time.Duration(tail+1)*bin) * (1 + p.cfg.Margin)),
	}
	return p.win
}

// rankBin returns the bin holding the pct percentile of n counts.
func rankBin(counts []uint32, n int64, pct float64) int {
	rank := max(int64(math.Ceil(pct/100*float64(n))), 1)
	var seen int64
	for i, c := range counts {
		if seen += int64(c); seen >= rank {
			return i
		}
	}
	return len(counts) - 1
}

func (p *Hybrid) bound(d Decision) Decision {
	d.Desired = max(d.Desired, p.cfg.KPA.MinInstances)
	if p.cfg.KPA.MaxInstances > 0 {
		d.Desired = min(d.Desired, p.cfg.KPA.MaxInstances)
	}
	return d
}

// QuietUntil implements [Quiet]: an idle function's answer changes only
// at the boundaries of its windows (the pre-warm, the end of the
// keep-alive) and never after the last of them until a request; while an
// instance is kept, it follows the KPA's part, which makes its own
// promise.
func (p *Hybrid) QuietUntil(now time.Time, o Observation, d Decision, m IdleMeter) time.Time {
	if o.InFlight > 0 || o.Queued > 0 || d.Panicking {
		return now
	}
	p.mu.Lock()
	since := o.LastActive
	if since.IsZero() {
		since = p.firstSeen
	}
	w := p.windowsLocked()
	p.mu.Unlock()
	end := since.Add(p.cfg.Fallback)
	if w.ok {
		end = since.Add(w.loaded)
		if pre := since.Add(w.prewarm); now.Before(pre) {
			return pre // unloaded whatever the averages say
		}
	}
	return within(now, end, p.kpa.QuietUntil(now, o, d, m))
}

var (
	_ ScalingPolicy = (*Hybrid)(nil)
	_ Quiet         = (*Hybrid)(nil)
)
