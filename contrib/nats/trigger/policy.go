package trigger

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

// Action is what the trigger does with a message once its invocation
// ended.
type Action uint8

// The actions.
const (
	// Ack acknowledges the message: it is done.
	Ack Action = iota + 1
	// Retry asks JetStream to deliver the message again after a delay,
	// until the delivery limit sends it to the dead-letter subject.
	Retry
	// DeadLetter publishes the message to the dead-letter subject at
	// once and terminates it.
	DeadLetter
)

var actionNames = [...]string{"", "ack", "retry", "dead-letter"}

// String returns "ack", "retry" or "dead-letter".
func (a Action) String() string {
	if int(a) < len(actionNames) && a > 0 {
		return actionNames[a]
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Policy decides what becomes of a message from its invocation's outcome:
// the function's response when it answered (err nil), or Invoke's error.
type Policy func(resp *faas.Response, err error) Action

// DefaultPolicy acknowledges a message the function answered, unless the
// answer says "try again": a 408, 429 or 5xx status (but 501 Not
// Implemented, which will not change) is retried, any other status,
// successful or not, is the function's final word. Of the dataplane's
// errors, those that say nothing against the message — overload (shed,
// concurrency_limit), an instance that failed or was not ready, a
// timeout, a function not deployed (yet: a dataplane that restarts
// deploys it again), a dataplane shutting down, a canceled call — are
// retried; a request the dataplane refuses as such (bad_request,
// too_large) can never succeed and is dead-lettered at once.
func DefaultPolicy(resp *faas.Response, err error) Action {
	if err == nil {
		switch s := resp.StatusCode; {
		case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests:
			return Retry
		case s >= 500 && s != http.StatusNotImplemented:
			return Retry
		}
		return Ack
	}
	if errors.Is(err, lifecycle.CodeBadRequest) || errors.Is(err, lifecycle.CodeTooLarge) {
		return DeadLetter
	}
	return Retry
}

// retryDelay returns how long to wait before delivery n+1 of a message
// whose delivery n ended with resp or err: the dataplane's Retry-After
// when it shed the request, the function's Retry-After header on a 429 or
// 503, else backoff(n); never more than limit.
func retryDelay(resp *faas.Response, err error, n uint64, backoff func(uint64) time.Duration, now time.Time, limit time.Duration) time.Duration {
	d := backoff(n)
	if after, ok := faas.RetryAfter(err); ok {
		d = after
	} else if err == nil && resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if after, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			d = after
		}
	}
	return min(max(d, 0), limit)
}

// DefaultBackoff is the delay before delivery n+1 after a failed delivery
// n without a Retry-After: 100 ms, doubling with each delivery, at most
// 10 s.
func DefaultBackoff(n uint64) time.Duration {
	if n == 0 {
		n = 1
	}
	if n > 8 {
		return 10 * time.Second
	}
	return min(100*time.Millisecond<<(n-1), 10*time.Second)
}

// maxRetryAfter bounds what ParseRetryAfter accepts.
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter parses an HTTP Retry-After value (RFC 9110 §10.2.3):
// delay-seconds, a non-negative integer, or an HTTP-date, taken relative
// to now (a date in the past means 0). It reports false for anything
// else, and for more than a day. It never panics, whatever v holds.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil || time.Duration(secs)*time.Second > maxRetryAfter {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := at.Sub(now)
	if d > maxRetryAfter {
		return 0, false
	}
	return max(d, 0), true
}

// errorCode returns the code and message a dead-lettered message carries:
// the protocol code of Invoke's error, or CodeFunctionError with the
// function's status and the start of its body.
func errorCode(resp *faas.Response, err error) (code, msg string) {
	if err != nil {
		if c, ok := lifecycle.CodeOf(err); ok {
			return string(c), oneLine(err.Error())
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return string(lifecycle.CodeTimeout), oneLine(err.Error())
		}
		return string(lifecycle.CodeInternal), oneLine(err.Error())
	}
	body := resp.Body
	if len(body) > 200 {
		body = body[:200]
	}
	return CodeFunctionError, oneLine("function answered " + strconv.Itoa(resp.StatusCode) + ": " + string(body))
}

// CodeFunctionError is the X-Faas-Error-Code of a message dead-lettered
// because of the function's own answer (its status is in
// HeaderStatus). It is this package's, not one of the protocol's codes.
const CodeFunctionError = "function_error"

// oneLine makes s a header value: printable ASCII, one line, at most 512
// bytes (what lifecycle.HeaderErrorMessage allows).
func oneLine(s string) string {
	b := make([]byte, 0, min(len(s), 512))
	for i := 0; i < len(s) && len(b) < 512; i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}
