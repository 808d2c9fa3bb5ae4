package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/faasplane/faas/internal/wire"

	"github.com/faasplane/faas/coldstart/code"
	"github.com/faasplane/faas/lifecycle"
)

const fuzzToken = "fuzz-control-token-0123456789"

// FuzzLoadHandler posts arbitrary bodies to /v1/load of an agent whose
// store has nothing: every answer is a protocol error with its three
// headers, never a panic or a 2xx, and the agent stays a generic pod with
// an empty work directory.
func FuzzLoadHandler(f *testing.F) {
	work := f.TempDir()
	a, err := New(Config{
		Store: code.StoreFunc(func(context.Context, code.Ref) (io.ReadCloser, error) {
			return nil, code.ErrNotFound
		}),
		WorkDir: work, Runtime: "go", ControlToken: fuzzToken,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = a.Close() })
	control := a.ControlHandler()
	good, _ := json.Marshal(lifecycle.LoadRequest{
		FunctionID: "f", Runtime: "go",
		Code: lifecycle.CodeRef{URI: "file:///x.tar.gz", Digest: code.DigestOf([]byte("x")), Size: 1},
	})
	f.Add(good)
	f.Add([]byte(`{"function_id":"f","runtime":"python"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", lifecycle.PathLoad, bytes.NewReader(body))
		req.Header.Set(lifecycle.HeaderRequestID, "fuzz")
		wire.SetControlToken(req.Header, fuzzToken)
		control.ServeHTTP(rec, req)
		resp := rec.Result()
		perr := lifecycle.ErrorFromResponse(resp)
		if perr == nil {
			t.Fatalf("load without code succeeded: %d %s", resp.StatusCode, rec.Body.String())
		}
		if !lifecycle.ErrorCode(resp.Header.Get(lifecycle.HeaderErrorCode)).Valid() ||
			resp.Header.Get(lifecycle.HeaderErrorMessage) == "" || perr.RequestID != "fuzz" {
			t.Fatalf("error response without its headers: %v", resp.Header)
		}
		if a.Status().FunctionID != "" {
			t.Fatal("a function got loaded")
		}
		des, err := os.ReadDir(work)
		if err != nil || len(des) != 0 {
			t.Fatalf("work directory not empty after a failed load: %v", des)
		}
	})
}
