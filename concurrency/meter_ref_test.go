package concurrency

import (
	"fmt"
	"sync"
	"time"
)

// refMeter is the straightforward Meter the ring-buffer one replaced: a
// scan of the window's buckets at every read. The property tests hold the
// Meter to it, bit for bit.
//
// It turns observations of a function's concurrency into the averages
// the scaling policy reads: the time-weighted average number of requests in
// flight over a stable window and over a short panic window.
//
// Feed it with Observe(now, n) whenever the count changes or on a tick: n
// holds from now until the next observation, so the averages weigh each
// value by how long it lasted, not by how often it was reported. Count
// requests waiting for an instance as well as those running on one: they
// are demand the function cannot serve yet. A refMeter reads no clock; the
// caller passes now, so the same code runs on virtual time in a simulator.
// It is safe for concurrent use.
type refMeter struct {
	mu           sync.Mutex
	bucket       int64     // nanoseconds
	stableN      int64     // buckets in the stable window
	panicN       int64     // buckets in the panic window
	sums         []float64 // request·nanoseconds per bucket, a ring
	ids          []int64   // absolute bucket number held in each slot
	observed     bool
	first        time.Time // the first observation
	last         time.Time // the latest observation
	value        int       // the count since last
	lastActive   time.Time // when a non-zero count was last seen in force
	everInFlight bool
}

// newRefMeter returns a meter with no observations. It returns an error
// wrapping [ErrInvalidConfig] when a window is not a positive multiple of
// the bucket or the panic window exceeds the stable window.
func newRefMeter(cfg MeterConfig) (*refMeter, error) {
	if cfg.StableWindow == 0 {
		cfg.StableWindow = DefaultStableWindow
	}
	if cfg.PanicWindow == 0 {
		cfg.PanicWindow = DefaultPanicWindow
	}
	if cfg.Bucket == 0 {
		cfg.Bucket = DefaultBucket
	}
	switch {
	case cfg.Bucket < 0 || cfg.StableWindow < 0 || cfg.PanicWindow < 0:
		return nil, fmt.Errorf("%w: negative meter window or bucket", ErrInvalidConfig)
	case cfg.StableWindow%cfg.Bucket != 0 || cfg.PanicWindow%cfg.Bucket != 0:
		return nil, fmt.Errorf("%w: windows (%v, %v) must be multiples of the bucket %v",
			ErrInvalidConfig, cfg.StableWindow, cfg.PanicWindow, cfg.Bucket)
	case cfg.PanicWindow > cfg.StableWindow:
		return nil, fmt.Errorf("%w: panic window %v exceeds stable window %v",
			ErrInvalidConfig, cfg.PanicWindow, cfg.StableWindow)
	case cfg.StableWindow/cfg.Bucket > 1<<16:
		return nil, fmt.Errorf("%w: more than 65536 buckets", ErrInvalidConfig)
	}
	n := int64(cfg.StableWindow / cfg.Bucket)
	m := &refMeter{
		bucket:  int64(cfg.Bucket),
		stableN: n,
		panicN:  int64(cfg.PanicWindow / cfg.Bucket),
		sums:    make([]float64, n),
		ids:     make([]int64, n),
	}
	for i := range m.ids {
		m.ids[i] = -1
	}
	return m, nil
}

// Observe records that n requests are in flight (or queued) from now on.
// An observation older than the latest one changes the count but adds no
// time. A negative n counts as 0.
func (m *refMeter) Observe(now time.Time, n int) {
	m.mu.Lock()
	m.advance(now)
	m.value = max(n, 0)
	if m.value > 0 {
		m.lastActive = m.last
		m.everInFlight = true
	}
	m.mu.Unlock()
}

// advance integrates the current value from m.last to now. Callers hold mu.
func (m *refMeter) advance(now time.Time) {
	if !m.observed {
		m.observed, m.first, m.last = true, now, now
		return
	}
	if !now.After(m.last) {
		return
	}
	// Bucket numbers count from the first observation, not the Unix epoch,
	// so that any clock works (a simulator may start at time.Time{}).
	from, to := int64(m.last.Sub(m.first)), int64(now.Sub(m.first))
	if m.value > 0 {
		// Only the last stableN buckets can matter.
		if oldest := ceilDiv(to-m.stableN*m.bucket, m.bucket) * m.bucket; from < oldest {
			from = oldest
		}
		for from < to {
			id := from / m.bucket
			end := min((id+1)*m.bucket, to)
			m.add(id, float64(m.value)*float64(end-from))
			from = end
		}
		m.lastActive = now
	}
	m.last = now
}

func (m *refMeter) add(id int64, v float64) {
	i := id % m.stableN
	if m.ids[i] != id {
		m.ids[i], m.sums[i] = id, 0
	}
	m.sums[i] += v
}

// Averages returns the time-weighted average concurrency over the stable
// and the panic window ending at now, the latest observed count holding
// until now. A window covers whole buckets (exactly the window when now is
// on a bucket boundary, up to one bucket less otherwise) and never reaches
// back before the first observation; with no observation both averages
// are 0.
func (m *refMeter) Averages(now time.Time) (stable, panic float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.averages(now)
}

func (m *refMeter) averages(now time.Time) (stable, panic float64) {
	if !m.observed {
		return 0, 0
	}
	m.advance(now)
	t := int64(m.last.Sub(m.first))
	return m.window(t, m.stableN), m.window(t, m.panicN)
}

// window averages over the buckets that cover [t - n buckets, t): from the
// first bucket that starts inside that span to the one holding t's last
// instant, never before the first observation. At most n buckets.
func (m *refMeter) window(t, n int64) float64 {
	first := max(ceilDiv(t-n*m.bucket, m.bucket), 0)
	last := ceilDiv(t, m.bucket) - 1
	span := t - first*m.bucket
	if span <= 0 {
		return float64(m.value)
	}
	var sum float64
	for id := first; id <= last; id++ {
		if i := id % m.stableN; m.ids[i] == id {
			sum += m.sums[i]
		}
	}
	return sum / float64(span)
}

// Observation returns what a [ScalingPolicy] needs from the meter at now:
// both averages, the latest count as InFlight and LastActive. The caller
// fills in Instances, InstanceLimit and Queued.
func (m *refMeter) Observation(now time.Time) Observation {
	m.mu.Lock()
	defer m.mu.Unlock()
	stable, panic := m.averages(now)
	o := Observation{
		StableConcurrency: stable,
		PanicConcurrency:  panic,
		InFlight:          m.value,
	}
	if m.everInFlight {
		o.LastActive = m.lastActive
	}
	return o
}
