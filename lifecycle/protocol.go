package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// HTTP headers of the protocol, shared by the gateway, the agent and the
// functions' callers.
const (
	// HeaderFunctionID names the function an invocation is for. The agent
	// refuses a request whose function ID is not the one it has loaded.
	HeaderFunctionID = "X-Faas-Function-Id"
	// HeaderRequestID carries the request's ID; the gateway generates one
	// when it is absent and every response echoes it.
	HeaderRequestID = "X-Faas-Request-Id"
	// HeaderCaller names the caller, for per-caller fairness when the
	// dataplane sheds load.
	HeaderCaller = "X-Faas-Caller"
	// HeaderPriority is the request's priority class: "critical",
	// "default" or "sheddable".
	HeaderPriority = "X-Faas-Priority"
	// HeaderIdempotent, set to "true", allows the dataplane to retry the
	// request on another instance even after its body reached a function.
	HeaderIdempotent = "X-Faas-Idempotent"
	// HeaderForwardedBy names the dataplane node that forwarded a request
	// to the function's owner node, so that it is never forwarded twice.
	HeaderForwardedBy = "X-Faas-Forwarded-By"
	// HeaderErrorCode carries an [ErrorCode] on every error response.
	HeaderErrorCode = "X-Faas-Error-Code"
	// HeaderErrorMessage carries a human-readable message on every error
	// response (single line, at most 512 bytes).
	HeaderErrorMessage = "X-Faas-Error-Message"
	// HeaderErrorSource marks an error response written by faasplane
	// itself (an agent or a gateway) rather than by a function: WriteError
	// sets it, and the agent strips it from function responses. Callers
	// trust X-Faas-Error-Code only on responses that carry it, so a
	// function that passes on another service's error headers is not
	// mistaken for an agent refusing the request.
	HeaderErrorSource = "X-Faas-Error-Source"
)

// ErrorSource is the value of HeaderErrorSource.
const ErrorSource = "faasplane"

// ErrorCode is the machine-readable kind of an error on the wire, in the
// X-Faas-Error-Code header. The set is closed: the agent and the dataplane
// send only these codes, and [ErrorCode.Valid] rejects any other.
type ErrorCode string

// The error codes and the HTTP status each travels with.
const (
	// CodeBadRequest (400): the request is malformed (a bad header, JSON
	// body or parameter).
	CodeBadRequest ErrorCode = "bad_request"
	// CodeUnauthorized (401): a control call without the pod's control
	// token, or with another one.
	CodeUnauthorized ErrorCode = "unauthorized"
	// CodeFunctionNotFound (404): no function with that ID is deployed.
	CodeFunctionNotFound ErrorCode = "function_not_found"
	// CodeInstanceReassigned (404): the agent serves another function (or
	// none); the caller's route to this address is stale.
	CodeInstanceReassigned ErrorCode = "instance_reassigned"
	// CodeNoFunction (404): a generic warm pod's answer to a ping; no
	// function is loaded.
	CodeNoFunction ErrorCode = "no_function"
	// CodeMethodNotAllowed (405): the endpoint does not take this method.
	CodeMethodNotAllowed ErrorCode = "method_not_allowed"
	// CodeAlreadyLoaded (409): a load request reached an agent that has
	// already loaded a function (a specialized pod is never reused).
	CodeAlreadyLoaded ErrorCode = "already_loaded"
	// CodeTooLarge (413): the request body exceeds the limit.
	CodeTooLarge ErrorCode = "too_large"
	// CodeBadPackage (422): the code package is invalid: a digest or size
	// mismatch, an unsafe archive entry, a bomb, a bad manifest.
	CodeBadPackage ErrorCode = "bad_package"
	// CodeConcurrencyLimit (429): the instance's or function's concurrency
	// limit is reached.
	CodeConcurrencyLimit ErrorCode = "concurrency_limit"
	// CodeInternal (500): a bug or an unexpected failure.
	CodeInternal ErrorCode = "internal"
	// CodeInstanceFailure (502): the instance failed to answer (connection
	// refused or reset, bad response).
	CodeInstanceFailure ErrorCode = "instance_failure"
	// CodeCodeFetch (502): the code could not be fetched from its store.
	CodeCodeFetch ErrorCode = "code_fetch_failed"
	// CodeLoadFailed (502): the function process did not start or listen.
	CodeLoadFailed ErrorCode = "load_failed"
	// CodeInitFailed (502): the function's init hook failed; the process
	// is kept and initialize may be retried.
	CodeInitFailed ErrorCode = "init_failed"
	// CodeNotReady (503): the instance is not Ready (loading, not yet
	// initialized, or draining).
	CodeNotReady ErrorCode = "not_ready"
	// CodeFunctionExited (503): the function process has exited, and the
	// request did not reach it: the instance is dead and is replaced, and
	// the request may go to another instance. (A request that was running
	// when the process died gets CodeInstanceFailure.)
	CodeFunctionExited ErrorCode = "function_exited"
	// CodeShed (503): the dataplane is overloaded and refused the request
	// early; Retry-After says when to retry.
	CodeShed ErrorCode = "shed"
	// CodeTimeout (504): the request's deadline, its queue time or its
	// cold start ran out.
	CodeTimeout ErrorCode = "timeout"
)

var codeStatus = map[ErrorCode]int{
	CodeBadRequest:         http.StatusBadRequest,
	CodeUnauthorized:       http.StatusUnauthorized,
	CodeFunctionNotFound:   http.StatusNotFound,
	CodeInstanceReassigned: http.StatusNotFound,
	CodeNoFunction:         http.StatusNotFound,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodeAlreadyLoaded:      http.StatusConflict,
	CodeTooLarge:           http.StatusRequestEntityTooLarge,
	CodeBadPackage:         http.StatusUnprocessableEntity,
	CodeConcurrencyLimit:   http.StatusTooManyRequests,
	CodeInternal:           http.StatusInternalServerError,
	CodeInstanceFailure:    http.StatusBadGateway,
	CodeCodeFetch:          http.StatusBadGateway,
	CodeLoadFailed:         http.StatusBadGateway,
	CodeInitFailed:         http.StatusBadGateway,
	CodeNotReady:           http.StatusServiceUnavailable,
	CodeFunctionExited:     http.StatusServiceUnavailable,
	CodeShed:               http.StatusServiceUnavailable,
	CodeTimeout:            http.StatusGatewayTimeout,
}

// Codes returns every valid error code, sorted.
func Codes() []ErrorCode {
	out := make([]ErrorCode, 0, len(codeStatus))
	for c := range codeStatus {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Valid reports whether c is one of the protocol's codes.
func (c ErrorCode) Valid() bool {
	_, ok := codeStatus[c]
	return ok
}

// Status returns the HTTP status that travels with c (500 for an invalid
// code).
func (c ErrorCode) Status() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error of the protocol: what an agent or the gateway sends on
// the wire, and what the client and Invoke return. errors.Is(err, c) holds
// for the ErrorCode c of the Error, so the codes serve as sentinels.
type Error struct {
	// Code is the machine-readable kind.
	Code ErrorCode
	// Message is a human-readable description.
	Message string
	// Status is the HTTP status (Code.Status() unless the sender chose
	// otherwise).
	Status int
	// RequestID is the request's X-Faas-Request-Id, when known.
	RequestID string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "faas: " + string(e.Code)
	}
	return "faas: " + string(e.Code) + ": " + e.Message
}

// CodeOf returns the protocol code that err carries: the code of the
// [*Error] in its chain, or the ErrorCode it is.
func CodeOf(err error) (ErrorCode, bool) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code, true
	}
	var c ErrorCode
	if errors.As(err, &c) {
		return c, true
	}
	return "", false
}

// Is reports whether target is e's ErrorCode.
func (e *Error) Is(target error) bool {
	c, ok := target.(ErrorCode)
	return ok && c == e.Code
}

// Error returns the code itself ("shed"), so that a code prints the same
// whether it is formatted as a string or as an error. An ErrorCode is an
// error so that errors.Is(err, CodeShed) tests the code of any error that
// carries an [*Error]; the codes are constants, so no caller can change
// what they match.
func (c ErrorCode) Error() string { return string(c) }

// Errorf returns an *Error with code c, its status, and a formatted message.
func Errorf(c ErrorCode, format string, args ...any) *Error {
	return &Error{Code: c, Status: c.Status(), Message: fmt.Sprintf(format, args...)}
}

// ErrorFromResponse returns the *Error that resp carries in its headers, or
// nil when resp is not an error response (status < 400). A 4xx/5xx without
// a valid X-Faas-Error-Code (e.g. from a proxy in between) becomes
// CodeInstanceFailure with the status kept. It does not read the body.
// Use [FromFaasplane] first where a function's own response may carry
// X-Faas-Error-* headers.
func ErrorFromResponse(resp *http.Response) *Error {
	if resp.StatusCode < 400 {
		return nil
	}
	code := ErrorCode(resp.Header.Get(HeaderErrorCode))
	msg := resp.Header.Get(HeaderErrorMessage)
	if !code.Valid() {
		if msg == "" {
			msg = fmt.Sprintf("unexpected HTTP status %d", resp.StatusCode)
		}
		code = CodeInstanceFailure
	}
	return &Error{Code: code, Message: msg, Status: resp.StatusCode, RequestID: resp.Header.Get(HeaderRequestID)}
}
