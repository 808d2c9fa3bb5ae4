package loadshed

import (
	"fmt"
	"strings"
)

// Priority is a request's class. While shedding, every Sheddable request is
// refused before any Default one, and no Critical request is refused while
// a Sheddable or over-share request is still admitted.
type Priority int8

// The priority classes, in increasing order; the zero value is Default.
const (
	// Sheddable requests are the first to go: prefetches, retries by
	// background jobs, anything whose loss costs nothing but a delay.
	Sheddable Priority = -1
	// Default is the class of every request that does not say otherwise.
	Default Priority = 0
	// Critical requests are refused only when the server is full even
	// after everything else was refused.
	Critical Priority = 1
)

// String returns "sheddable", "default" or "critical".
func (p Priority) String() string {
	switch p {
	case Sheddable:
		return "sheddable"
	case Default:
		return "default"
	case Critical:
		return "critical"
	default:
		return fmt.Sprintf("Priority(%d)", int8(p))
	}
}

// Valid reports whether p is one of the three classes.
func (p Priority) Valid() bool { return p >= Sheddable && p <= Critical }

// MaxPriorityLen bounds the text ParsePriority reads.
const MaxPriorityLen = 32

// ParsePriority parses a priority from outside input (for example a
// header): "critical", "default" or "sheddable", in any case, with
// surrounding spaces ignored; the empty string is Default. Anything else
// is an error wrapping [ErrInvalidPriority].
func ParsePriority(s string) (Priority, error) {
	if len(s) > MaxPriorityLen {
		return Default, fmt.Errorf("%w: %d bytes", ErrInvalidPriority, len(s))
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return Default, nil
	case "critical":
		return Critical, nil
	case "sheddable":
		return Sheddable, nil
	}
	return Default, fmt.Errorf("%w: %q", ErrInvalidPriority, s)
}

// Outcome is how an admitted request ended, reported by [Ticket.Done].
type Outcome uint8

const (
	// Success: the request completed; its latency is a sample for the
	// adaptive limit.
	Success Outcome = iota
	// Failure: the function answered with an error; its latency is still
	// a sample, since the server did the work.
	Failure
	// Dropped: the request timed out or a downstream refused it for
	// overload; the adaptive limit backs off by 10 %, as AIMD limiters do
	// on a drop.
	Dropped
	// Ignored: the client went away or the request says nothing about
	// the server's load; it only leaves the in-flight count.
	Ignored
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Dropped:
		return "dropped"
	case Ignored:
		return "ignored"
	default:
		return fmt.Sprintf("Outcome(%d)", uint8(o))
	}
}
