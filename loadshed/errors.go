package loadshed

import (
	"errors"
	"fmt"
	"time"
)

// ErrShed is matched, through errors.Is, by every refusal of [Shedder.Admit].
// The error is a *[ShedError] that says why and when to retry; the gateway
// maps it to 503 with a Retry-After header.
var ErrShed = errors.New("loadshed: request shed")

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("loadshed: invalid configuration")

// ErrInvalidPriority is wrapped by [ParsePriority]'s errors.
var ErrInvalidPriority = errors.New("loadshed: invalid priority")

// Reason says why a request was shed.
type Reason uint8

const (
	// ReasonOverload: the server is full for the request's class.
	ReasonOverload Reason = iota + 1
	// ReasonOverShare: the caller holds more than its fair share of the
	// server while the server is overloaded.
	ReasonOverShare
	// ReasonPriority: the request is Sheddable and the server is
	// overloaded.
	ReasonPriority
)

// String returns the reason in a few words.
func (r Reason) String() string {
	switch r {
	case ReasonOverload:
		return "server overloaded"
	case ReasonOverShare:
		return "caller over its fair share"
	case ReasonPriority:
		return "sheddable request during overload"
	default:
		return fmt.Sprintf("Reason(%d)", uint8(r))
	}
}

// ShedError is the error of a shed request. The values are shared between
// requests and must not be modified.
type ShedError struct {
	// Reason says why the request was shed.
	Reason Reason
	// RetryAfter is when the client may retry: the detector's cool-off,
	// the soonest shedding can end.
	RetryAfter time.Duration
	msg        string
}

// Error returns the reason and the retry hint.
func (e *ShedError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrShed) true.
func (e *ShedError) Is(target error) bool { return target == ErrShed }

func newShedError(r Reason, retry time.Duration) *ShedError {
	return &ShedError{
		Reason:     r,
		RetryAfter: retry,
		msg:        fmt.Sprintf("loadshed: request shed (%s); retry after %v", r, retry),
	}
}

// RetryAfter returns the retry hint of a shed error and true, or 0 and
// false when err is not one.
func RetryAfter(err error) (time.Duration, bool) {
	var se *ShedError
	if errors.As(err, &se) {
		return se.RetryAfter, true
	}
	return 0, false
}
