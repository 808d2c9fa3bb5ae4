package hostagent

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/faasplane/faas/contrib/nats/health"
	"github.com/faasplane/faas/lifecycle"
)

func TestJudge(t *testing.T) {
	ready := func(fn string) lifecycle.PingResponse {
		return lifecycle.PingResponse{FunctionID: fn, State: lifecycle.AgentReady}
	}
	timeout := errors.New("context deadline exceeded")
	for _, tc := range []struct {
		name     string
		before   tracked
		resp     lifecycle.PingResponse
		err      error
		verdict  health.State
		fails    int
		function string
	}{
		{"first ready", tracked{}, ready("f"), nil, health.StateUp, 0, "f"},
		{"ready again resets the failures", tracked{function: "f", verdict: health.StateDown, fails: 5}, ready("f"), nil, health.StateUp, 0, "f"},
		{"ready for another function", tracked{function: "f", verdict: health.StateUp}, ready("g"), nil, health.StateReassigned, 0, "f"},
		{"one failure is noise", tracked{function: "f", verdict: health.StateUp}, lifecycle.PingResponse{}, timeout, health.StateUp, 1, "f"},
		{"two failures: down", tracked{function: "f", verdict: health.StateUp, fails: 1}, lifecycle.PingResponse{}, timeout, health.StateDown, 2, "f"},
		{"down stays down", tracked{function: "f", verdict: health.StateDown, fails: 2}, lifecycle.PingResponse{}, timeout, health.StateDown, 3, "f"},
		{"not ready after ready is a failure", tracked{function: "f", verdict: health.StateUp, fails: 1}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNotReady, "loading"), health.StateDown, 2, "f"},
		{"loaded after ready is a failure", tracked{function: "f", verdict: health.StateUp}, lifecycle.PingResponse{FunctionID: "f", State: lifecycle.AgentLoaded}, nil, health.StateUp, 1, "f"},
		{"exited", tracked{function: "f", verdict: health.StateUp}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeFunctionExited, "exit status 2"), health.StateExited, 0, "f"},
		{"exited before ready", tracked{}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeFunctionExited, "exit status 2"), health.StateExited, 0, ""},
		{"no function after one", tracked{function: "f", assigned: true, verdict: health.StateUp}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNoFunction, ""), health.StateReassigned, 0, "f"},
		{"reassigned", tracked{function: "f", assigned: true, verdict: health.StateDown}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeInstanceReassigned, ""), health.StateReassigned, 0, "f"},
		{"a warm pod gets no verdict", tracked{}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNoFunction, ""), "", 0, ""},
		{"a loading pod gets no verdict", tracked{}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNotReady, "loading"), "", 0, ""},
		{"a loaded pod gets no verdict, but its function", tracked{}, lifecycle.PingResponse{FunctionID: "f", State: lifecycle.AgentLoaded}, nil, "", 0, "f"},
		{"an unreachable warm pod gets no verdict", tracked{}, lifecycle.PingResponse{}, timeout, "", 0, ""},
		{"an unreachable pod seen loading fails", tracked{assigned: true, fails: 1}, lifecycle.PingResponse{}, timeout, health.StateDown, 2, ""},
		{"a warm pod seen loading, then no function: reassigned", tracked{assigned: true}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeNoFunction, ""), health.StateReassigned, 0, ""},
		{"a wrong token is our fault, not the pod's", tracked{function: "f", verdict: health.StateUp, fails: 1}, lifecycle.PingResponse{}, lifecycle.Errorf(lifecycle.CodeUnauthorized, ""), health.StateUp, 1, "f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.before
			judge(&tr, tc.resp, tc.err, 2)
			assert.Equal(t, tc.verdict, tr.verdict)
			assert.Equal(t, tc.fails, tr.fails)
			assert.Equal(t, tc.function, tr.function)
			if tr.verdict != tc.before.verdict {
				assert.NotEmpty(t, tr.reason)
			}
		})
	}
}
