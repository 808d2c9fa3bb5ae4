package concurrency

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Defaults of [MeterConfig], those of Knative's autoscaler (KPA).
const (
	// DefaultStableWindow is the window of the stable average: long
	// enough to smooth bursts out, short enough to follow a daily curve.
	DefaultStableWindow = 60 * time.Second
	// DefaultPanicWindow is the window of the panic average, 10 % of the
	// stable window: it sees a burst within seconds.
	DefaultPanicWindow = 6 * time.Second
	// DefaultBucket is the resolution of both windows.
	DefaultBucket = time.Second
)

// MeterConfig configures a [Meter].
type MeterConfig struct {
	// StableWindow is the window of the stable average. Zero means
	// DefaultStableWindow.
	StableWindow time.Duration
	// PanicWindow is the window of the panic average; it must not exceed
	// StableWindow. Zero means DefaultPanicWindow.
	PanicWindow time.Duration
	// Bucket is the width of one bucket; both windows must be whole
	// multiples of it. Zero means DefaultBucket.
	Bucket time.Duration
}

// Meter is a [Meter] whose averages cost O(1) instead of a scan of the
// window's buckets: it keeps the buckets that hold time above zero in
// order, a ring that grows with them, and next to them the running sums
// of the stable and the panic window, which a bucket enters when it is
// written and leaves when the window slides past it. It has Meter's
// methods and gives the same averages, bit for bit (the property tests
// compare the two): the sums hold integer request·nanoseconds, which
// floating point adds and subtracts exactly below 2^53 (a stable window's
// average concurrency below about 150,000 with the default windows); above
// that the Meter falls back to Meter's scan, in Meter's order, until
// the sums are small again.
//
// Reading the averages costs O(1) per bucket that leaves the window since
// the previous observation or read, and nothing once it is empty: a
// scaling round every 2 s reads 2 buckets, not 60, which is what a
// dataplane or a simulator of many thousands of functions pays at every
// round. Memory follows the buckets in use too: a function called once a
// minute holds a bucket or two, and an idle one none. It is safe for
// concurrent use.
type Meter struct {
	mu      sync.Mutex
	bucket  int64
	stableN int64
	panicN  int64
	// buckets holds the buckets with time above zero, by number, from
	// head on; those from phead on are in the panic window.
	buckets     []meterBucket
	head, phead int

	// The running sums: stableSum covers the buckets after stableOut,
	// panicSum those after panicOut (absolute bucket numbers, both up to
	// the bucket of the latest instant seen).
	stableSum, panicSum float64
	stableOut, panicOut int64
	inexact             bool // a sum reached 2^53: scan until it is small

	observed     bool
	first, last  time.Time
	value        int
	lastActive   time.Time
	everInFlight bool
}

// meterBucket is one bucket with time above zero.
type meterBucket struct {
	id  int64
	sum float64 // request·nanoseconds
}

// exactBound is 2^53: below it, sums of integer-valued floats are exact.
const exactBound = 1 << 53

// NewMeter returns a meter with no observations. It validates cfg as
// [NewMeter] does and returns an error wrapping [ErrInvalidConfig] for
// the same settings.
func NewMeter(cfg MeterConfig) (*Meter, error) {
	stable, panicW, bucket, err := meterWindows(cfg)
	if err != nil {
		return nil, err
	}
	n := int64(stable / bucket)
	m := &Meter{bucket: int64(bucket), stableN: n, panicN: int64(panicW / bucket)}
	m.stableOut, m.panicOut = -1-n, -1-m.panicN
	return m, nil
}

// meterWindows applies MeterConfig's defaults and checks the windows.
func meterWindows(cfg MeterConfig) (stable, panicW, bucket time.Duration, err error) {
	stable, panicW, bucket = cfg.StableWindow, cfg.PanicWindow, cfg.Bucket
	if stable == 0 {
		stable = DefaultStableWindow
	}
	if panicW == 0 {
		panicW = DefaultPanicWindow
	}
	if bucket == 0 {
		bucket = DefaultBucket
	}
	switch {
	case bucket < 0 || stable < 0 || panicW < 0:
		err = fmt.Errorf("%w: negative meter window or bucket", ErrInvalidConfig)
	case stable%bucket != 0 || panicW%bucket != 0:
		err = fmt.Errorf("%w: windows (%v, %v) must be multiples of the bucket %v", ErrInvalidConfig, stable, panicW, bucket)
	case panicW > stable:
		err = fmt.Errorf("%w: panic window %v exceeds stable window %v", ErrInvalidConfig, panicW, stable)
	case stable/bucket > 1<<16:
		err = fmt.Errorf("%w: more than 65536 buckets", ErrInvalidConfig)
	}
	return stable, panicW, bucket, err
}

// Observe records that n requests are in flight (or queued) from now on,
// as [Meter.Observe].
func (m *Meter) Observe(now time.Time, n int) {
	m.mu.Lock()
	m.advance(now)
	m.value = max(n, 0)
	if m.value > 0 {
		m.lastActive = m.last
		m.everInFlight = true
	}
	m.mu.Unlock()
}

// advance integrates the current value from m.last to now, as Meter's
// advance, sliding the windows first. Callers hold mu.
func (m *Meter) advance(now time.Time) {
	if !m.observed {
		m.observed, m.first, m.last = true, now, now
		return
	}
	if !now.After(m.last) {
		return
	}
	from, to := int64(m.last.Sub(m.first)), int64(now.Sub(m.first))
	m.slide(ceilDiv(to, m.bucket) - 1)
	if m.value > 0 {
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

// slide moves both windows so that they end with bucket last: the buckets
// that fall out leave the running sums.
func (m *Meter) slide(last int64) {
	m.stableOut = max(m.stableOut, last-m.stableN)
	m.panicOut = max(m.panicOut, last-m.panicN)
	// The panic window first: it ends later, so every bucket the stable
	// window drops has left it already.
	for ; m.phead < len(m.buckets) && m.buckets[m.phead].id <= m.panicOut; m.phead++ {
		m.panicSum -= m.buckets[m.phead].sum
	}
	for m.head < len(m.buckets) && m.buckets[m.head].id <= m.stableOut {
		m.stableSum -= m.buckets[m.head].sum
		m.head++
	}
	switch {
	case m.head == len(m.buckets):
		// The window is empty: an idle meter holds no buckets.
		m.buckets, m.head, m.phead = nil, 0, 0
		m.stableSum, m.panicSum = 0, 0
	case m.head > 16 && 2*m.head > len(m.buckets):
		n := copy(m.buckets, m.buckets[m.head:])
		clear(m.buckets[n:])
		m.buckets, m.phead, m.head = m.buckets[:n], m.phead-m.head, 0
	}
	if m.phead == len(m.buckets) {
		m.panicSum = 0
	}
}

// add adds v > 0 to bucket id, the newest bucket or a newer one.
func (m *Meter) add(id int64, v float64) {
	if n := len(m.buckets); n > m.head && m.buckets[n-1].id == id {
		m.buckets[n-1].sum += v
	} else {
		m.buckets = append(m.buckets, meterBucket{id: id, sum: v})
	}
	m.stableSum += v // writes are never older than the stable window
	if id > m.panicOut {
		m.panicSum += v
	} else {
		m.phead = len(m.buckets) // the bucket is behind the panic window
	}
	if m.stableSum >= exactBound {
		m.inexact = true
	}
}

// Averages returns the time-weighted average concurrency over the stable
// and the panic window ending at now, as [Meter.Averages].
func (m *Meter) Averages(now time.Time) (stable, panic float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.averages(now)
}

func (m *Meter) averages(now time.Time) (stable, panic float64) {
	if !m.observed {
		return 0, 0
	}
	m.advance(now)
	t := int64(m.last.Sub(m.first))
	if m.inexact {
		m.stableSum, m.panicSum = m.scan(t, m.stableN), m.scan(t, m.panicN)
		m.inexact = m.stableSum >= exactBound
	}
	return m.window(t, m.stableN, m.stableSum), m.window(t, m.panicN, m.panicSum)
}

// window is Meter's window with the sum at hand: the buckets from the
// first that starts inside [t - n buckets, t), never before the first
// observation, to the one holding t's last instant.
func (m *Meter) window(t, n int64, sum float64) float64 {
	first := max(ceilDiv(t-n*m.bucket, m.bucket), 0)
	span := t - first*m.bucket
	if span <= 0 {
		return float64(m.value)
	}
	return sum / float64(span)
}

// scan sums the window's buckets one by one in Meter's order, for when the
// running sums may have rounded.
func (m *Meter) scan(t, n int64) float64 {
	first := max(ceilDiv(t-n*m.bucket, m.bucket), 0)
	var sum float64
	for _, b := range m.buckets[m.head:] {
		if b.id >= first {
			sum += b.sum
		}
	}
	return sum
}

// Idle returns what the meter will read from now on if the count stays
// zero ([Quiet] policies take it): bounds of both averages, and when they
// reach zero. With a count above zero now, the averages may still rise:
// the bounds are +Inf.
func (m *Meter) Idle(now time.Time) IdleMeter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.observed {
		return IdleMeter{Zero: now}
	}
	stable, panic := m.averages(now)
	if m.value > 0 {
		return IdleMeter{MaxStable: math.Inf(1), MaxPanic: math.Inf(1), Zero: now}
	}
	t := int64(m.last.Sub(m.first))
	// A window's sum only loses buckets; its span never falls below one
	// bucket less than the window, nor below the span so far.
	bound := func(avg float64, n int64) float64 {
		if avg == 0 {
			return 0
		}
		first := max(ceilDiv(t-n*m.bucket, m.bucket), 0)
		span := t - first*m.bucket
		least := min(span, (n-1)*m.bucket)
		if least <= 0 {
			return math.Inf(1)
		}
		return avg * float64(span) / float64(least)
	}
	out := IdleMeter{MaxStable: bound(stable, m.stableN), MaxPanic: bound(panic, m.panicN), Zero: now}
	if stable > 0 && len(m.buckets) > 0 {
		// The newest bucket above zero leaves the stable window once a
		// bucket stableN later is under way.
		newest := m.buckets[len(m.buckets)-1].id
		out.Zero = m.first.Add(time.Duration((newest+m.stableN)*m.bucket + 1))
	}
	return out
}

// Observation returns what a [ScalingPolicy] needs from the meter at now,
// as [Meter.Observation].
func (m *Meter) Observation(now time.Time) Observation {
	m.mu.Lock()
	defer m.mu.Unlock()
	stable, panic := m.averages(now)
	o := Observation{StableConcurrency: stable, PanicConcurrency: panic, InFlight: m.value}
	if m.everInFlight {
		o.LastActive = m.lastActive
	}
	return o
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a > 0) == (b > 0) {
		q++
	}
	return q
}
