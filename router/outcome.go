package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/faasplane/faas/lifecycle"
)

// Outcome is how a routed request ended, as far as the instance's health
// and the safety of a retry are concerned.
type Outcome uint8

const (
	// Success: the instance answered. A function's own error response is
	// a success here: the instance did its job.
	Success Outcome = iota
	// Canceled: the caller gave up (context canceled) before the
	// instance answered; it says nothing about the instance.
	Canceled
	// Rejected: the agent refused the request at its own concurrency
	// limit (429 concurrency_limit) before the function saw it. Not held
	// against the instance; safe to retry.
	Rejected
	// ConnectFailed: the instance could not be reached (connection
	// refused or reset before the request was written). Counts as a
	// breaker failure; safe to retry.
	ConnectFailed
	// NotReady: the agent answered not_ready. Counts as a breaker
	// failure; safe to retry.
	NotReady
	// Reassigned: the agent answered instance_reassigned (or
	// no_function): the address no longer serves this function. The
	// route is removed at once; safe to retry.
	Reassigned
	// InstanceFailed: the request may have reached the function and the
	// instance failed (bad or no response, the process died under it,
	// timeout). Counts as a breaker failure; retried only if idempotent.
	InstanceFailed
	// Exited: the agent answered function_exited: the function process is
	// dead and the request did not reach it. The route is removed at once
	// and the instance replaced (Hooks.Replace), as a dead instance
	// answers at once and would otherwise keep being picked; safe to
	// retry.
	Exited
)

var outcomeNames = [...]string{"success", "canceled", "rejected", "connect_failed", "not_ready", "reassigned", "instance_failed", "function_exited"}

// String returns the outcome's name, e.g. "connect_failed".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Failure reports whether o counts against the instance's breaker.
func (o Outcome) Failure() bool {
	return o == ConnectFailed || o == NotReady || o == InstanceFailed
}

// Reached reports whether the request's body may have reached the function:
// true for Success, Canceled (the request may have been delivered) and
// InstanceFailed; false when the agent or the network turned it away first.
func (o Outcome) Reached() bool {
	return o == Success || o == Canceled || o == InstanceFailed
}

// Retryable reports whether a request that ended with o may be sent again
// to another instance: when it never reached the function, or when it did
// but failed and the caller marked it idempotent. Success and Canceled are
// never retried. Whether a retry is also within budget is [Router.Retry]'s
// concern.
func Retryable(o Outcome, idempotent bool) bool {
	switch o {
	case Rejected, ConnectFailed, NotReady, Reassigned, Exited:
		return true
	case InstanceFailed:
		return idempotent
	}
	return false
}

// OutcomeOf classifies the error of a proxied request: nil is Success;
// context.Canceled is Canceled; a protocol error ([*lifecycle.Error]) maps
// by code (instance_reassigned and no_function → Reassigned,
// function_exited → Exited, not_ready → NotReady, concurrency_limit →
// Rejected); a failed dial or a refused
// connection is ConnectFailed; anything else, including
// context.DeadlineExceeded, is InstanceFailed, the conservative answer
// (counted against the instance, not retried unless idempotent).
func OutcomeOf(err error) Outcome {
	if err == nil {
		return Success
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	if code, ok := lifecycle.CodeOf(err); ok {
		switch code {
		case lifecycle.CodeInstanceReassigned, lifecycle.CodeNoFunction:
			return Reassigned
		case lifecycle.CodeFunctionExited:
			return Exited
		case lifecycle.CodeNotReady:
			return NotReady
		case lifecycle.CodeConcurrencyLimit:
			return Rejected
		}
		return InstanceFailed
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ConnectFailed
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return ConnectFailed
	}
	return InstanceFailed
}
