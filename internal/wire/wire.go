// Package wire is the server side of the agent protocol's plumbing, shared
// by the agent and the gateway and kept out of the public API: writing an
// error response with its headers, telling faasplane's own error responses
// from a function's, decoding a request body with its limits, and checking
// a control token in constant time. Package lifecycle holds the protocol's
// public types (codes, headers, requests, the client).
package wire

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/faasplane/faas/lifecycle"
)

// ErrorSource is the value of lifecycle.HeaderErrorSource on faasplane's
// own error responses.
const ErrorSource = "faasplane"

// maxMessageLen bounds X-Faas-Error-Message so that an error never makes a
// response header large.
const maxMessageLen = 512

// WriteError writes an error response: the status, the three error headers
// (X-Faas-Error-Code, X-Faas-Error-Message, X-Faas-Request-Id) and the
// message as a text body. The message is reduced to one line of valid UTF-8
// of at most 512 bytes, so no input can inject headers or make them large.
// A zero status means code.Status().
func WriteError(w http.ResponseWriter, requestID string, status int, code lifecycle.ErrorCode, message string) {
	if !code.Valid() {
		code, status = lifecycle.CodeInternal, 0
	}
	if status == 0 {
		status = code.Status()
	}
	msg := SanitizeHeaderValue(message, maxMessageLen)
	h := w.Header()
	h.Set(lifecycle.HeaderErrorCode, string(code))
	h.Set(lifecycle.HeaderErrorMessage, msg)
	h.Set(lifecycle.HeaderRequestID, SanitizeHeaderValue(requestID, 128))
	h.Set(lifecycle.HeaderErrorSource, ErrorSource)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, string(code)+": "+msg)
}

// WriteErr writes err as an error response: an *lifecycle.Error (found with
// errors.As) keeps its code and status; any other error becomes
// lifecycle.CodeInternal.
func WriteErr(w http.ResponseWriter, requestID string, err error) {
	var pe *lifecycle.Error
	if errors.As(err, &pe) {
		WriteError(w, requestID, pe.Status, pe.Code, pe.Message)
		return
	}
	WriteError(w, requestID, 0, lifecycle.CodeInternal, err.Error())
}

// FromFaasplane reports whether resp is an error response written by
// faasplane (an agent or a gateway): status >= 400, a valid
// X-Faas-Error-Code and the X-Faas-Error-Source marker. A function's own
// error responses never pass, whatever headers the function set.
func FromFaasplane(resp *http.Response) bool {
	return resp.StatusCode >= 400 && resp.Header.Get(lifecycle.HeaderErrorSource) == ErrorSource &&
		lifecycle.ErrorCode(resp.Header.Get(lifecycle.HeaderErrorCode)).Valid()
}

// SanitizeHeaderValue returns s as a single line of valid UTF-8 without
// control characters, cut to at most max bytes on a rune boundary.
func SanitizeHeaderValue(s string, max int) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MaxRequestBytes bounds the JSON body of a protocol request (load or
// initialize). A lifecycle.LoadRequest near its field limits is far smaller; anything
// larger is refused before it is parsed.
const MaxRequestBytes = 1 << 20

// DecodeLoadRequest reads one JSON lifecycle.LoadRequest from r and validates it. It
// reads at most MaxRequestBytes+1 bytes. Errors are [*lifecycle.Error]s ready for
// [WriteErr]: lifecycle.CodeTooLarge for an oversized body, lifecycle.CodeBadRequest for
// malformed JSON, trailing data or a field that fails
// [lifecycle.LoadRequest.Validate] (the message names the field). Unknown fields are
// ignored, so a newer dataplane can talk to an older agent.
func DecodeLoadRequest(r io.Reader) (lifecycle.LoadRequest, error) {
	var req lifecycle.LoadRequest
	if err := decodeJSON(r, &req); err != nil {
		return lifecycle.LoadRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return lifecycle.LoadRequest{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "load request: %v", err)
	}
	return req, nil
}

// DecodeInitializeRequest is [DecodeLoadRequest] for an lifecycle.InitializeRequest.
func DecodeInitializeRequest(r io.Reader) (lifecycle.InitializeRequest, error) {
	var req lifecycle.InitializeRequest
	if err := decodeJSON(r, &req); err != nil {
		return lifecycle.InitializeRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return lifecycle.InitializeRequest{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "initialize request: %v", err)
	}
	return req, nil
}

func decodeJSON(r io.Reader, v any) error {
	body, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		// A server that wraps the body in http.MaxBytesReader with a
		// smaller cap gets lifecycle.CodeTooLarge too.
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", MaxRequestBytes)
		}
		return lifecycle.Errorf(lifecycle.CodeBadRequest, "reading request body: %v", err)
	}
	if len(body) > MaxRequestBytes {
		return lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", MaxRequestBytes)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return lifecycle.Errorf(lifecycle.CodeBadRequest, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return lifecycle.Errorf(lifecycle.CodeBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(trimmed)) {
		return lifecycle.Errorf(lifecycle.CodeBadRequest, "trailing data after the JSON object")
	}
	return nil
}

// authScheme is the scheme of the Authorization header of control calls.
const authScheme = "Bearer "

// SetControlToken sets the Authorization header that presents token on a
// control call.
func SetControlToken(h http.Header, token string) { h.Set("Authorization", authScheme+token) }

// TokenMatcher checks the control token that a request presents, in time
// that does not depend on how much of it matches.
type TokenMatcher struct{ sum [sha256.Size]byte }

// NewTokenMatcher returns a matcher for token.
func NewTokenMatcher(token string) TokenMatcher {
	return TokenMatcher{sum: sha256.Sum256([]byte(token))}
}

// Match reports whether r presents the token. Both sides are hashed first,
// so that neither the comparison nor the lengths leak how close a guess
// came.
func (m TokenMatcher) Match(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), authScheme)
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], m.sum[:]) == 1 && ok
}
