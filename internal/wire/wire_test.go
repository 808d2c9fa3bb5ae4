package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

const goodDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func goodLoad() lifecycle.LoadRequest {
	return lifecycle.LoadRequest{
		FunctionID: "tenant/fn-1",
		Code:       lifecycle.CodeRef{URI: "file:///srv/f.tar.gz", Digest: goodDigest, Size: 1234},
		Runtime:    "go",
		Env:        map[string]string{"A": "1"},
		Limits:     lifecycle.Limits{Concurrency: 4},
	}
}

// FuzzDecodeLoadRequest feeds arbitrary bodies to the load decoder: it
// either returns a bad_request/too_large *lifecycle.Error or a request that validates
// and survives a JSON round trip unchanged.
func FuzzDecodeLoadRequest(f *testing.F) {
	good, _ := json.Marshal(goodLoad())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"function_id":"f","code":{"uri":"x","digest":"` + goodDigest + `","size":1},"runtime":"go"}`))
	f.Add([]byte(`{"function_id":"f","env":{"A=":"x"}}`))
	f.Add([]byte(`{"function_id":"f"} trailing`))
	f.Add([]byte(`{"limits":{"concurrency":-1}}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeLoadRequest(strings.NewReader(string(body)))
		if err != nil {
			var pe *lifecycle.Error
			if !errors.As(err, &pe) || (pe.Code != lifecycle.CodeBadRequest && pe.Code != lifecycle.CodeTooLarge) {
				t.Fatalf("untyped or unexpected error: %v", err)
			}
			if !utf8.ValidString(SanitizeHeaderValue(pe.Message, 512)) {
				t.Fatal("message does not sanitize to UTF-8")
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request does not validate: %v", err)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := DecodeLoadRequest(strings.NewReader(string(again)))
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		b2, _ := json.Marshal(req2)
		if string(b2) != string(again) {
			t.Fatalf("round trip changed the request:\n%s\n%s", again, b2)
		}
	})
}

// FuzzDecodeInitializeRequest is the same for the initialize decoder.
func FuzzDecodeInitializeRequest(f *testing.F) {
	f.Add([]byte(`{"function_id":"f","timeout_ms":10}`))
	f.Add([]byte(`{"function_id":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeInitializeRequest(strings.NewReader(string(body)))
		if err != nil {
			var pe *lifecycle.Error
			if !errors.As(err, &pe) || (pe.Code != lifecycle.CodeBadRequest && pe.Code != lifecycle.CodeTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSanitizeHeaderValue checks that any input becomes one line of valid
// UTF-8 without control characters and within the bound.
func FuzzSanitizeHeaderValue(f *testing.F) {
	f.Add("hello", 10)
	f.Add("a\r\nb", 3)
	f.Add("\xff\xfe日本", 4)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 4096 {
			return
		}
		out := SanitizeHeaderValue(s, max)
		if len(out) > max || !utf8.ValidString(out) {
			t.Fatalf("bad output %q for max %d", out, max)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", out)
			}
		}
	})
}

func BenchmarkDecodeLoadRequest(b *testing.B) {
	body, _ := json.Marshal(goodLoad())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeLoadRequest(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteError(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		WriteError(httptest.NewRecorder(), "req-123", 0, lifecycle.CodeConcurrencyLimit, "instance at its limit of 8")
	}
}

func TestWriteErrorRoundTrip(t *testing.T) {
	for _, c := range lifecycle.Codes() {
		rec := httptest.NewRecorder()
		WriteError(rec, "req-1", 0, c, "something failed")
		resp := rec.Result()
		require.Equal(t, c.Status(), resp.StatusCode, c)
		got := lifecycle.ErrorFromResponse(resp)
		require.Equal(t, &lifecycle.Error{Code: c, Message: "something failed", Status: c.Status(), RequestID: "req-1"}, got)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	}
}

func TestWriteErrorSanitizes(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, "id\r\nX-Evil: 1", 0, lifecycle.CodeBadRequest, "line1\r\nX-Injected: yes\x00"+strings.Repeat("é", 600))
	h := rec.Result().Header
	require.Empty(t, h.Get("X-Injected"))
	require.Empty(t, h.Get("X-Evil"))
	msg := h.Get(lifecycle.HeaderErrorMessage)
	require.LessOrEqual(t, len(msg), 512)
	require.True(t, utf8.ValidString(msg))
	require.False(t, strings.ContainsAny(msg, "\r\n\x00"))
	require.Equal(t, "id  X-Evil: 1", h.Get(lifecycle.HeaderRequestID))
}

func TestWriteErrorInvalidCodeBecomesInternal(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, "", 418, lifecycle.ErrorCode("teapot"), "x")
	require.Equal(t, 500, rec.Code)
	require.Equal(t, string(lifecycle.CodeInternal), rec.Header().Get(lifecycle.HeaderErrorCode))
}

func TestWriteErr(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteErr(rec, "r", fmt.Errorf("ctx: %w", &lifecycle.Error{Code: lifecycle.CodeNotReady, Status: 503, Message: "loading"}))
	require.Equal(t, 503, rec.Code)
	require.Equal(t, "not_ready", rec.Header().Get(lifecycle.HeaderErrorCode))
	require.Equal(t, "loading", rec.Header().Get(lifecycle.HeaderErrorMessage))

	rec = httptest.NewRecorder()
	WriteErr(rec, "r", errors.New("plain"))
	require.Equal(t, 500, rec.Code)
	require.Equal(t, "internal", rec.Header().Get(lifecycle.HeaderErrorCode))
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
	WriteError(rec, "r1", 0, lifecycle.CodeNotReady, "loading")
	marked := rec.Result()
	require.True(t, FromFaasplane(marked), "WriteError marks its responses")

	fn := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
	fn.Header.Set(lifecycle.HeaderErrorCode, string(lifecycle.CodeConcurrencyLimit))
	require.False(t, FromFaasplane(fn), "a function's own X-Faas-Error-Code is not faasplane's")

	ok := &http.Response{StatusCode: http.StatusOK, Header: marked.Header.Clone()}
	require.False(t, FromFaasplane(ok), "a success is never an error")

	bad := &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{}}
	bad.Header.Set(lifecycle.HeaderErrorSource, ErrorSource)
	bad.Header.Set(lifecycle.HeaderErrorCode, "made_up")
	require.False(t, FromFaasplane(bad), "codes outside the closed set are not trusted")
}

func TestDecodeLoadRequest(t *testing.T) {
	good, err := json.Marshal(goodLoad())
	require.NoError(t, err)
	cases := []struct {
		name string
		body string
		code lifecycle.ErrorCode // "" means success
		msg  string
	}{
		{"valid", string(good), "", ""},
		{"valid with spaces and unknown field", " \n" + strings.Replace(string(good), "{", `{"future_field":[1,2],`, 1) + "\n ", "", ""},
		{"empty", "", lifecycle.CodeBadRequest, "JSON object"},
		{"array", "[]", lifecycle.CodeBadRequest, "JSON object"},
		{"null", "null", lifecycle.CodeBadRequest, "JSON object"},
		{"truncated", string(good[:len(good)-3]), lifecycle.CodeBadRequest, "malformed"},
		{"trailing object", string(good) + "{}", lifecycle.CodeBadRequest, "trailing"},
		{"trailing garbage", string(good) + "x", lifecycle.CodeBadRequest, "trailing"},
		{"wrong type", `{"function_id":5}`, lifecycle.CodeBadRequest, "malformed"},
		{"invalid field", `{"function_id":"f"}`, lifecycle.CodeBadRequest, "code.uri"},
		{"too large", `{"function_id":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, lifecycle.CodeTooLarge, "larger"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := DecodeLoadRequest(strings.NewReader(c.body))
			if c.code == "" {
				require.NoError(t, err)
				require.Equal(t, goodLoad(), req)
				return
			}
			var pe *lifecycle.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, c.code, pe.Code)
			require.Contains(t, pe.Message, c.msg)
			require.Equal(t, lifecycle.LoadRequest{}, req)
		})
	}
}

func TestDecodeUnderMaxBytesReader(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"function_id":"f"}`))
	body := http.MaxBytesReader(rec, r.Body, 4)
	_, err := DecodeInitializeRequest(body)
	require.ErrorIs(t, err, lifecycle.CodeTooLarge)
}

func TestDecodeInitializeRequest(t *testing.T) {
	req, err := DecodeInitializeRequest(strings.NewReader(`{"function_id":"f","timeout_ms":5}`))
	require.NoError(t, err)
	require.Equal(t, lifecycle.InitializeRequest{FunctionID: "f", TimeoutMillis: 5}, req)
	_, err = DecodeInitializeRequest(strings.NewReader(`{"function_id":"f","timeout_ms":-5}`))
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)
	_, err = DecodeInitializeRequest(strings.NewReader(`{}`))
	require.ErrorIs(t, err, lifecycle.CodeBadRequest)
}

func TestTokenMatcher(t *testing.T) {
	a, b := lifecycle.NewControlToken(), lifecycle.NewControlToken()
	m := NewTokenMatcher(a)
	req := func(auth string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://agent/v1/ping", nil)
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
}
