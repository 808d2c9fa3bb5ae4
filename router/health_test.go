package router

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/faasplane/faas/internal/wire"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
)

func pingBody(fn, state string) []byte {
	b, _ := json.Marshal(lifecycle.PingResponse{FunctionID: fn, State: state, PID: 42})
	return b
}

func TestCheckPingResponse(t *testing.T) {
	errHeader := func(code lifecycle.ErrorCode) http.Header {
		h := http.Header{}
		h.Set(lifecycle.HeaderErrorCode, string(code))
		return h
	}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       []byte
		healthy    bool
		reassigned bool
		is         error
	}{
		{"ready", 200, nil, pingBody("f", "ready"), true, false, nil},
		{"other function", 200, nil, pingBody("g", "ready"), false, true, nil},
		{"loaded, not initialized", 200, nil, pingBody("f", "loaded"), false, false, lifecycle.CodeNotReady},
		{"malformed body", 200, nil, []byte("<html>"), false, false, nil},
		{"empty body", 200, nil, nil, false, false, nil},
		{"no function (generic pod)", 404, errHeader(lifecycle.CodeNoFunction), nil, false, true, nil},
		{"instance reassigned", 404, errHeader(lifecycle.CodeInstanceReassigned), nil, false, true, nil},
		{"function exited", 503, errHeader(lifecycle.CodeFunctionExited), nil, false, false, lifecycle.CodeFunctionExited},
		{"proxy error without code", 502, nil, nil, false, false, lifecycle.CodeInstanceFailure},
		{"redirect", 302, nil, nil, false, false, nil},
		{"no content", 204, nil, nil, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			err := checkPingResponse("f", tt.status, h, tt.body)
			if tt.healthy {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tt.reassigned, errors.Is(err, lifecycle.CodeInstanceReassigned), "%v", err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
		})
	}
}

// agentStub answers /v1/ping like an agent in the state the test sets.
func agentStub(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*lifecycle.Instance, func()) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != lifecycle.PathPing || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if !wire.NewTokenMatcher(stubToken).Match(r) {
			wire.WriteError(w, "", 0, lifecycle.CodeUnauthorized, "no token")
			return
		}
		answer(w, r)
	}))
	inst := lifecycle.NewInstance(lifecycle.Info{ID: "i", FunctionID: "f", Addr: "192.0.2.1:1", // never the invocation listener
		Control: lifecycle.Control{Addr: strings.TrimPrefix(srv.URL, "http://"), Token: stubToken}}, t0)
	return inst, srv.Close
}

const stubToken = "stub-token-0123456789"

func TestHTTPChecker(t *testing.T) {
	c := NewHTTPChecker(nil, 0)
	defer c.CloseIdleConnections()
	assert.Equal(t, time.Second, c.timeout)

	inst, stop := agentStub(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(pingBody("f", "ready"))
	})
	assert.NoError(t, c.Check(context.Background(), inst))
	stop()

	inst, stop = agentStub(t, func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, "", 0, lifecycle.CodeNoFunction, "no function loaded")
	})
	assert.ErrorIs(t, c.Check(context.Background(), inst), lifecycle.CodeInstanceReassigned)
	stop()

	inst, stop = agentStub(t, func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, "", 0, lifecycle.CodeNotReady, "initializing")
	})
	assert.ErrorIs(t, c.Check(context.Background(), inst), lifecycle.CodeNotReady)
	stop()

	// Nothing listens: the connection is refused.
	assert.Error(t, c.Check(context.Background(), inst))

	// An agent that does not answer in time.
	slow := NewHTTPChecker(&http.Client{Transport: &http.Transport{}}, 50*time.Millisecond)
	defer slow.CloseIdleConnections()
	inst, stop = agentStub(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	defer stop()
	assert.ErrorIs(t, slow.Check(context.Background(), inst), context.DeadlineExceeded)
}

func TestPushReportsTakeOutAndReadmit(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 2)
	fx.add("f", "b", 2)
	fx.rec.reset()

	err := fx.r.ReportHealth(t0, HealthReport{InstanceID: "nope"})
	assert.ErrorIs(t, err, ErrUnknownInstance)

	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Healthy: false, Reason: "kubelet down"}))
	assert.Equal(t, lifecycle.Unhealthy, a.State())
	assert.Equal(t, Stats{Instances: 2, Routable: 1, Unhealthy: 1, Free: 2}, fx.r.Stats("f"))
	for range 20 {
		rt := fx.pick("f")
		assert.NotSame(t, a, rt.Instance())
		rt.Release(t0, Success)
	}
	// A repeated verdict changes nothing.
	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Healthy: false}))

	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Healthy: true}))
	assert.Equal(t, lifecycle.Ready, a.State())
	assert.Equal(t, Stats{Instances: 2, Routable: 2, Free: 4}, fx.r.Stats("f"))
	assert.Equal(t, []string{"ejected/health_push@a", "readmitted/health_push@a"}, fx.rec.kinds())

	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Reassigned: true}))
	assert.Equal(t, lifecycle.Draining, a.State())
	assert.Equal(t, "removed/instance_reassigned@a", fx.rec.kinds()[2])
	assert.Empty(t, fx.replaced)

	// A pushed death removes and replaces.
	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "b", Exited: true, Reason: "signal: killed"}))
	assert.Equal(t, "removed/function_exited@b", fx.rec.kinds()[3])
	assert.Equal(t, "b", <-fx.replaced)
	assert.Equal(t, Stats{}, fx.r.Stats("f"))
}

// TestPullAndPushMustBothClear: the first of the two sources takes the
// instance out; it returns only when neither holds it out.
func TestPullAndPushMustBothClear(t *testing.T) {
	fx := newFixture(t, Config{})
	a := fx.add("f", "a", 1)
	m := fx.r.lookup(a)
	fx.r.setHealth(t0, m, healthPull, false, CauseHealthPull, "pull says no")
	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Healthy: false}))
	require.NoError(t, fx.r.ReportHealth(t0, HealthReport{InstanceID: "a", Healthy: true}))
	assert.Equal(t, lifecycle.Unhealthy, a.State(), "pull still holds it out")
	_, err := fx.r.Pick("f")
	assert.Same(t, ErrNoRoute, err)
	fx.r.setHealth(t0, m, healthPull, true, CauseHealthPull, "pull says yes")
	assert.Equal(t, lifecycle.Ready, a.State())
	fx.pick("f").Release(t0, Success)
	assert.Equal(t, []string{"added/caller@a", "ejected/health_pull@a", "readmitted/health_pull@a"}, fx.rec.kinds())
}

func TestHealthFeed(t *testing.T) {
	feed := newHealthFeed()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan HealthReport, 4)
	done := make(chan error, 2)
	go func() { done <- feed.Watch(ctx, func(r HealthReport) { got <- r }) }()
	require.Eventually(t, func() bool { return feed.Watches() == 1 }, 5*time.Second, time.Millisecond)
	feed.Publish(HealthReport{InstanceID: "a"})
	assert.Equal(t, "a", (<-got).InstanceID)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, 0, feed.Watches())
	feed.Publish(HealthReport{InstanceID: "b"}) // nobody listens
	assert.Empty(t, got)

	go func() { done <- feed.Watch(context.Background(), func(HealthReport) {}) }()
	require.Eventually(t, func() bool { return feed.Watches() == 1 }, 5*time.Second, time.Millisecond)
	feed.Close()
	feed.Close()
	assert.ErrorIs(t, <-done, ErrClosed)
	assert.ErrorIs(t, feed.Watch(context.Background(), func(HealthReport) {}), ErrClosed)
}
