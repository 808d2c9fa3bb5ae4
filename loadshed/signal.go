package loadshed

import "time"

// Signal is a pluggable overload signal: CPU, memory, a downstream's
// health, anything. The detector polls it once per control interval, from
// the goroutine that runs the control step, and treats true as
// "overloaded during that interval"; hysteresis and cool-off are the
// detector's, so a Signal just reports the present. Overloaded must be
// cheap and must not block.
type Signal interface {
	Overloaded(now time.Time) bool
}

// SignalFunc adapts a function to [Signal].
type SignalFunc func(now time.Time) bool

// Overloaded calls f.
func (f SignalFunc) Overloaded(now time.Time) bool { return f(now) }
