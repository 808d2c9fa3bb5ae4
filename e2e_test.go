package faas

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/clock"
	"github.com/faasplane/faas/faastest"
	"github.com/faasplane/faas/lifecycle"
)

func TestFirstRequestColdStartsNextIsWarm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deploy(specFor("hello", "hello"))

	status, h, body := e.do(http.MethodPost, "/invoke/hello", nil, "ping")
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, "ping")
	assert.NotEmpty(t, h.Get(lifecycle.HeaderRequestID))

	// The gateway records a request after its response went out.
	fs := e.statsAfter("hello", 1)
	assert.EqualValues(t, 1, fs.ColdStarts.Count, "the first request cold-started an instance")
	assert.EqualValues(t, 1, fs.Waited)

	status, _, body = e.do(http.MethodPost, "/", map[string]string{lifecycle.HeaderFunctionID: "hello", lifecycle.HeaderRequestID: "my-id-1"}, "again")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "again")
	fs = e.statsAfter("hello", 2)
	assert.EqualValues(t, 1, fs.ColdStarts.Count, "the second request found the warm instance")
	assert.EqualValues(t, 1, fs.WarmHits)
	assert.EqualValues(t, 2, fs.OK)
}

func TestInvokeInProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deploy(specFor("hello", "hello"))
	resp, err := e.dp.Invoke(context.Background(), &Request{FunctionID: "hello", Body: []byte("from a queue")})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(resp.Body), "from a queue")
	assert.True(t, resp.Waited)

	_, err = e.dp.Invoke(context.Background(), &Request{FunctionID: "nope"})
	require.ErrorIs(t, err, lifecycle.CodeFunctionNotFound)
	var pe *lifecycle.Error
	require.True(t, errors.As(err, &pe))
	assert.NotEmpty(t, pe.RequestID)
}

func TestGatewayRejectsBadInputWithErrorHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Limits.MaxBodyBytes = 1024 })
	e.deploy(specFor("hello", "hello"))

	status, h, _ := e.do(http.MethodPost, "/invoke/unknown", nil, "")
	requireWireError(t, status, h, http.StatusNotFound, lifecycle.CodeFunctionNotFound)

	status, h, _ = e.do(http.MethodPost, "/", nil, "")
	requireWireError(t, status, h, http.StatusBadRequest, lifecycle.CodeBadRequest)

	status, h, _ = e.do(http.MethodPost, "/invoke/bad%20id", nil, "")
	requireWireError(t, status, h, http.StatusBadRequest, lifecycle.CodeBadRequest)

	status, h, _ = e.do(http.MethodPost, "/invoke/hello", map[string]string{lifecycle.HeaderFunctionID: "other"}, "")
	requireWireError(t, status, h, http.StatusBadRequest, lifecycle.CodeBadRequest)

	status, h, _ = e.do(http.MethodPost, "/invoke/hello", map[string]string{lifecycle.HeaderPriority: "urgent!!"}, "")
	requireWireError(t, status, h, http.StatusBadRequest, lifecycle.CodeBadRequest)

	status, h, _ = e.do(http.MethodPost, "/invoke/hello", nil, strings.Repeat("x", 2048))
	requireWireError(t, status, h, http.StatusRequestEntityTooLarge, lifecycle.CodeTooLarge)

	status, h, _ = e.do(http.MethodPost, "/invoke/hello", map[string]string{lifecycle.HeaderRequestID: "keep-me"}, "ok")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "keep-me", h.Get(lifecycle.HeaderRequestID))
}

func TestDeployRejectsBadSpecsAndCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	err := e.dp.Deploy(context.Background(), FunctionSpec{ID: "x"})
	require.ErrorIs(t, err, ErrInvalidSpec)

	bad := specFor("hello", "hello")
	bad.Code.Digest = "sha256:" + strings.Repeat("0", 64)
	err = e.dp.Deploy(context.Background(), bad)
	var se *SpecError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "Code", se.Fields[0].Field)

	other := specFor("hello", "hello")
	other.Runtime = "python"
	require.ErrorAs(t, e.dp.Deploy(context.Background(), other), &se)
	assert.Equal(t, "Runtime", se.Fields[0].Field)
}

// TestScaleToZeroAndBack runs the control loop on virtual time (the warm
// pool and the health checks on real time): the keep-alive and the
// meter's stable window pass in a few polls, not in seconds.
func TestScaleToZeroAndBack(t *testing.T) {
	t.Parallel()
	clk := faastest.NewClock(time.Time{})
	e := newEnv(t, func(c *Config) {
		c.Clock = clk
		c.Pool.Clock, c.Health.Clock = clock.System(), clock.System()
	})
	spec := specFor("hello", "hello")
	spec.KeepAlive = 5 * time.Second
	e.deploy(spec)
	status, _, _ := e.do(http.MethodPost, "/invoke/hello", nil, "1")
	require.Equal(t, http.StatusOK, status)
	fs := e.statsAfter("hello", 1)
	require.Equal(t, 1, fs.Routes.Instances)

	start := clk.Now()
	require.Eventually(t, func() bool {
		clk.Advance(100 * time.Millisecond) // the scaler's interval in newEnv
		fs, _ := e.dp.FunctionStats("hello")
		return len(fs.Instances) == 0 && fs.Routes.Instances == 0
	}, 20*time.Second, time.Millisecond, "scaled to zero after the keep-alive")
	idle := clk.Now().Sub(start)
	assert.GreaterOrEqual(t, idle, spec.KeepAlive, "not before the keep-alive")
	assert.Less(t, idle, spec.KeepAlive+2*time.Second+time.Second, "within the keep-alive plus the stable window and a round")

	status, _, _ = e.do(http.MethodPost, "/invoke/hello", nil, "2")
	require.Equal(t, http.StatusOK, status)
	fs = e.statsAfter("hello", 2)
	assert.EqualValues(t, 2, fs.ColdStarts.Count, "the request after scale to zero cold-started again")
}

func TestRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deploy(specFor("hello", "hello"))
	status, _, _ := e.do(http.MethodPost, "/invoke/hello", nil, "1")
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, e.dp.Remove(context.Background(), "hello"))
	status, h, _ := e.do(http.MethodPost, "/invoke/hello", nil, "")
	requireWireError(t, status, h, http.StatusNotFound, lifecycle.CodeFunctionNotFound)
	require.ErrorIs(t, e.dp.Remove(context.Background(), "hello"), lifecycle.CodeFunctionNotFound)
}
