package lifecycle

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeLoadRequest feeds arbitrary bodies to the load decoder: it
// either returns a bad_request/too_large *Error or a request that validates
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
			var pe *Error
			if !errors.As(err, &pe) || (pe.Code != CodeBadRequest && pe.Code != CodeTooLarge) {
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
			var pe *Error
			if !errors.As(err, &pe) || (pe.Code != CodeBadRequest && pe.Code != CodeTooLarge) {
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
