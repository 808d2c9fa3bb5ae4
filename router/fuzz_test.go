package router

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/faasplane/faas/lifecycle"
)

// FuzzCheckPingResponse feeds CheckPingResponse what an agent, or whatever
// now listens on its address, may answer. It must never panic, must call an
// instance healthy only on a 200 that names the function in state "ready",
// and must report every answer that names another function as reassigned.
func FuzzCheckPingResponse(f *testing.F) {
	f.Add(200, "", []byte(`{"function_id":"f","state":"ready","pid":1}`))
	f.Add(200, "", []byte(`{"function_id":"g","state":"ready"}`))
	f.Add(200, "", []byte(`{"function_id":"f","state":"loaded"}`))
	f.Add(200, "", []byte(`{"function_id":"f","state":"ready"`))
	f.Add(200, "", []byte(`null`))
	f.Add(404, "no_function", []byte("no_function: none loaded\n"))
	f.Add(404, "instance_reassigned", []byte(nil))
	f.Add(503, "not_ready", []byte(nil))
	f.Add(502, "", []byte("<html>bad gateway</html>"))
	f.Add(0, "\x00", []byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, status int, code string, body []byte) {
		h := http.Header{}
		h.Set(lifecycle.HeaderErrorCode, code)
		err := checkPingResponse("f", status, h, body)
		if err == nil {
			var pr lifecycle.PingResponse
			if status != 200 || json.Unmarshal(body, &pr) != nil || pr.FunctionID != "f" || pr.State != "ready" {
				t.Fatalf("healthy verdict for status %d, body %q", status, body)
			}
			return
		}
		var pr lifecycle.PingResponse
		if status == 200 && json.Unmarshal(body, &pr) == nil && pr.FunctionID != "f" &&
			!errors.Is(err, lifecycle.CodeInstanceReassigned) {
			t.Fatalf("answer for function %q not reported as reassigned: %v", pr.FunctionID, err)
		}
		if len(err.Error()) > 2048 {
			t.Fatalf("error message of %d bytes", len(err.Error()))
		}
	})
}
