package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestCodesAreClosedAndSorted(t *testing.T) {
	codes := Codes()
	require.Len(t, codes, 19)
	require.True(t, slices.IsSorted(codes))
	for _, c := range codes {
		require.True(t, c.Valid(), c)
		require.GreaterOrEqual(t, c.Status(), 400, c)
	}
	require.False(t, ErrorCode("nope").Valid())
	require.Equal(t, http.StatusInternalServerError, ErrorCode("nope").Status())
}

func TestErrorIsMatchesSentinelsByCode(t *testing.T) {
	e := Errorf(CodeInitFailed, "boom %d", 1)
	require.Equal(t, http.StatusBadGateway, e.Status)
	require.Equal(t, "faas: init_failed: boom 1", e.Error())
	wrapped := fmt.Errorf("calling agent: %w", e)
	require.ErrorIs(t, wrapped, CodeInitFailed)
	require.NotErrorIs(t, wrapped, CodeLoadFailed)
	// Another *Error is not a sentinel, even with the same code.
	require.False(t, errors.Is(e, &Error{Code: CodeInitFailed}))
	require.Equal(t, "not_ready", CodeNotReady.Error())
	require.Equal(t, "not_ready", fmt.Sprint(CodeNotReady), "prints as the code")
}

func TestWriteErrorRoundTrip(t *testing.T) {
	for _, c := range Codes() {
		rec := httptest.NewRecorder()
		WriteError(rec, "req-1", 0, c, "something failed")
		resp := rec.Result()
		require.Equal(t, c.Status(), resp.StatusCode, c)
		got := ErrorFromResponse(resp)
		require.Equal(t, &Error{Code: c, Message: "something failed", Status: c.Status(), RequestID: "req-1"}, got)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	}
}

func TestWriteErrorSanitizes(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, "id\r\nX-Evil: 1", 0, CodeBadRequest, "line1\r\nX-Injected: yes\x00"+strings.Repeat("é", 600))
	h := rec.Result().Header
	require.Empty(t, h.Get("X-Injected"))
	require.Empty(t, h.Get("X-Evil"))
	msg := h.Get(HeaderErrorMessage)
	require.LessOrEqual(t, len(msg), 512)
	require.True(t, utf8.ValidString(msg))
	require.False(t, strings.ContainsAny(msg, "\r\n\x00"))
	require.Equal(t, "id  X-Evil: 1", h.Get(HeaderRequestID))
}

func TestWriteErrorInvalidCodeBecomesInternal(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, "", 418, ErrorCode("teapot"), "x")
	require.Equal(t, 500, rec.Code)
	require.Equal(t, string(CodeInternal), rec.Header().Get(HeaderErrorCode))
}

func TestWriteErr(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteErr(rec, "r", fmt.Errorf("ctx: %w", &Error{Code: CodeNotReady, Status: 503, Message: "loading"}))
	require.Equal(t, 503, rec.Code)
	require.Equal(t, "not_ready", rec.Header().Get(HeaderErrorCode))
	require.Equal(t, "loading", rec.Header().Get(HeaderErrorMessage))

	rec = httptest.NewRecorder()
	WriteErr(rec, "r", errors.New("plain"))
	require.Equal(t, 500, rec.Code)
	require.Equal(t, "internal", rec.Header().Get(HeaderErrorCode))
}

func TestErrorFromResponse(t *testing.T) {
	require.Nil(t, ErrorFromResponse(&http.Response{StatusCode: 200, Header: http.Header{}}))
	// A 502 from something that is not an agent (no code header).
	got := ErrorFromResponse(&http.Response{StatusCode: 502, Header: http.Header{}})
	require.Equal(t, CodeInstanceFailure, got.Code)
	require.Equal(t, 502, got.Status)
	require.Equal(t, "unexpected HTTP status 502", got.Message)
	// An unknown code keeps its message but not its code.
	h := http.Header{}
	h.Set(HeaderErrorCode, "made_up")
	h.Set(HeaderErrorMessage, "hi")
	got = ErrorFromResponse(&http.Response{StatusCode: 404, Header: h})
	require.Equal(t, &Error{Code: CodeInstanceFailure, Message: "hi", Status: 404}, got)
}

func TestSanitizeHeaderValue(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 10, "plain"},
		{"0123456789abc", 10, "0123456789"},
		{"a\tb\nc", 10, "a b c"},
		{"héllo", 2, "h"},
		{"héllo", 3, "hé"},
		{"bad\xffutf8", 20, "bad utf8"},
		{"", 5, ""},
	}
	for _, c := range cases {
		require.Equal(t, c.want, SanitizeHeaderValue(c.in, c.max), "%q", c.in)
	}
}

func TestFromFaasplaneTrustsOnlyMarkedErrors(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, "r1", 0, CodeNotReady, "loading")
	marked := rec.Result()
	require.True(t, FromFaasplane(marked), "WriteError marks its responses")

	fn := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
	fn.Header.Set(HeaderErrorCode, string(CodeConcurrencyLimit))
	require.False(t, FromFaasplane(fn), "a function's own X-Faas-Error-Code is not faasplane's")

	ok := &http.Response{StatusCode: http.StatusOK, Header: marked.Header.Clone()}
	require.False(t, FromFaasplane(ok), "a success is never an error")

	bad := &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{}}
	bad.Header.Set(HeaderErrorSource, ErrorSource)
	bad.Header.Set(HeaderErrorCode, "made_up")
	require.False(t, FromFaasplane(bad), "codes outside the closed set are not trusted")
}

func TestControlTokens(t *testing.T) {
	a, b := NewControlToken(), NewControlToken()
	require.NotEqual(t, a, b)
	require.True(t, ValidControlToken(a))
	for _, bad := range []string{"", "short", strings.Repeat("x", MaxControlTokenLen+1), "has a space in it here", "nul\x00byte-0123456789"} {
		require.False(t, ValidControlToken(bad), "%q", bad)
	}
	m := NewTokenMatcher(a)
	req := func(auth string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://agent"+PathPing, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	ok := req("")
	SetControlToken(ok.Header, a)
	require.True(t, m.Match(ok))
	for _, auth := range []string{"", a, "Bearer " + b, "Bearer " + a[:len(a)-1], "Basic " + a, "Bearer  " + a} {
		require.False(t, m.Match(req(auth)), "%q", auth)
	}
	// A Control prints and logs its address, never its token.
	c := Control{Addr: "10.0.0.1:8081", Token: a}
	require.Equal(t, "10.0.0.1:8081", c.String())
	require.Equal(t, "10.0.0.1:8081", c.LogValue().String())
	require.NotContains(t, fmt.Sprint(c), a)
}
