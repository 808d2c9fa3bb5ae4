package trigger

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	faas "github.com/faasplane/faas"
	"github.com/faasplane/faas/lifecycle"
)

func TestDefaultPolicy(t *testing.T) {
	answer := func(status int) *faas.Response { return &faas.Response{StatusCode: status} }
	for _, tc := range []struct {
		name string
		resp *faas.Response
		err  error
		want Action
	}{
		{"200", answer(200), nil, Ack},
		{"204", answer(204), nil, Ack},
		{"302", answer(302), nil, Ack},
		{"400: the function's final word", answer(400), nil, Ack},
		{"404", answer(404), nil, Ack},
		{"408", answer(408), nil, Retry},
		{"429", answer(429), nil, Retry},
		{"500", answer(500), nil, Retry},
		{"501 will not change", answer(501), nil, Ack},
		{"503", answer(503), nil, Retry},
		{"shed", nil, lifecycle.Errorf(lifecycle.CodeShed, "overloaded"), Retry},
		{"concurrency limit", nil, lifecycle.Errorf(lifecycle.CodeConcurrencyLimit, ""), Retry},
		{"not ready", nil, lifecycle.Errorf(lifecycle.CodeNotReady, ""), Retry},
		{"instance failure", nil, lifecycle.Errorf(lifecycle.CodeInstanceFailure, ""), Retry},
		{"function exited", nil, lifecycle.Errorf(lifecycle.CodeFunctionExited, ""), Retry},
		{"timeout", nil, lifecycle.Errorf(lifecycle.CodeTimeout, ""), Retry},
		{"not deployed (yet)", nil, lifecycle.Errorf(lifecycle.CodeFunctionNotFound, ""), Retry},
		{"dataplane closed", nil, faas.ErrClosed, Retry},
		{"canceled", nil, context.Canceled, Retry},
		{"bad request", nil, lifecycle.Errorf(lifecycle.CodeBadRequest, ""), DeadLetter},
		{"too large", nil, lifecycle.Errorf(lifecycle.CodeTooLarge, ""), DeadLetter},
	} {
		assert.Equal(t, tc.want, DefaultPolicy(tc.resp, tc.err), tc.name)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for n, want := range map[uint64]time.Duration{0: 100 * time.Millisecond, 1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		5: 1600 * time.Millisecond, 8: 10 * time.Second, 9: 10 * time.Second, 1 << 40: 10 * time.Second} {
		assert.Equal(t, want, DefaultBackoff(n), "delivery %d", n)
	}
}

func TestRetryDelay(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	withHeader := func(status int, ra string) *faas.Response {
		return &faas.Response{StatusCode: status, Header: http.Header{"Retry-After": {ra}}}
	}
	backoff := func(n uint64) time.Duration { return time.Duration(n) * time.Second }
	for _, tc := range []struct {
		name string
		resp *faas.Response
		err  error
		n    uint64
		want time.Duration
	}{
		{"backoff without a hint", &faas.Response{StatusCode: 500}, nil, 3, 3 * time.Second},
		{"the function's Retry-After on 503", withHeader(503, "7"), nil, 1, 7 * time.Second},
		{"the function's Retry-After on 429, as a date", withHeader(429, now.Add(4*time.Second).Format(http.TimeFormat)), nil, 1, 4 * time.Second},
		{"Retry-After ignored on 500", withHeader(500, "7"), nil, 2, 2 * time.Second},
		{"a bad Retry-After falls back", withHeader(503, "soon"), nil, 2, 2 * time.Second},
		{"capped", withHeader(503, "3600"), nil, 1, time.Minute},
		{"an error without a hint", nil, lifecycle.Errorf(lifecycle.CodeShed, "x"), 4, 4 * time.Second},
	} {
		assert.Equal(t, tc.want, retryDelay(tc.resp, tc.err, tc.n, backoff, now, time.Minute), tc.name)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"86400", 24 * time.Hour, true},
		{"86401", 0, false},
		{"99999999999999999999", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), 0, false},
		{"Fri, 31 Dec 1999 23:59:59 GMT", 0, true},
		{"tomorrow", 0, false},
	} {
		got, ok := ParseRetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

// FuzzParseRetryAfter: never panics, and what it accepts lies in [0, a day].
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "-3", "1e3", " 5 "} {
		f.Add(s)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if ok && (d < 0 || d > maxRetryAfter) {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) refused but returned %v", v, d)
		}
	})
}

func TestErrorCode(t *testing.T) {
	code, msg := errorCode(nil, lifecycle.Errorf(lifecycle.CodeTimeout, "request timed out"))
	assert.Equal(t, "timeout", code)
	assert.Equal(t, "faas: timeout: request timed out", msg)
	code, _ = errorCode(nil, errors.New("something else"))
	assert.Equal(t, "internal", code)
	code, msg = errorCode(&faas.Response{StatusCode: 500, Body: []byte("boom\nat line 3")}, nil)
	assert.Equal(t, CodeFunctionError, code)
	assert.Equal(t, "function answered 500: boom at line 3", msg)
}

func TestActionString(t *testing.T) {
	assert.Equal(t, "ack", Ack.String())
	assert.Equal(t, "retry", Retry.String())
	assert.Equal(t, "dead-letter", DeadLetter.String())
	assert.Equal(t, "Action(9)", Action(9).String())
}
