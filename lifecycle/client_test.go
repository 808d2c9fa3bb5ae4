package lifecycle

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeAgent serves the protocol's endpoints with canned answers and records
// the requests it saw.
func fakeAgent(t *testing.T, h http.HandlerFunc) Control {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return Control{Addr: strings.TrimPrefix(srv.URL, "http://"), Token: testToken}
}

const testToken = "test-token-0123456789"

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func TestClientSuccessPaths(t *testing.T) {
	var gotLoad LoadRequest
	var gotInit InitializeRequest

	addr := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "Bearer "+testToken, r.Header.Get("Authorization"), "every call presents the token")
		switch r.Method + " " + r.URL.Path {
		case "GET " + PathWatch:
			require.Equal(t, AgentReady, r.URL.Query().Get("state"))
			require.Equal(t, "5s", r.URL.Query().Get("wait"))
			writeJSON(w, WatchResponse{FunctionID: "tenant/fn-1", State: AgentExited, Exit: "signal: killed"})
		case "POST " + PathLoad:
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			var err error
			err = json.NewDecoder(r.Body).Decode(&gotLoad)
			require.NoError(t, err)
			writeJSON(w, LoadResponse{FunctionID: gotLoad.FunctionID, PID: 42, Protocol: ProtocolHTTP1})
		case "POST " + PathInitialize:
			var err error
			err = json.NewDecoder(r.Body).Decode(&gotInit)
			require.NoError(t, err)
			writeJSON(w, InitializeResponse{FunctionID: gotInit.FunctionID, Attempts: 1})
		case "GET " + PathPing:
			writeJSON(w, PingResponse{FunctionID: "tenant/fn-1", State: "ready", PID: 42})
		case "GET " + PathStats:
			writeJSON(w, Stats{FunctionID: "tenant/fn-1", Completed: 7, Uptime: time.Second})
		default:
			writeError(w, "", CodeBadRequest, "unexpected "+r.URL.Path)
		}
	})
	var c Client // the zero value works
	ctx := context.Background()

	lr, err := c.Load(ctx, addr, goodLoad())
	require.NoError(t, err)
	require.Equal(t, LoadResponse{FunctionID: "tenant/fn-1", PID: 42, Protocol: "http1"}, lr)
	require.Equal(t, goodLoad(), gotLoad)

	ir, err := c.Initialize(ctx, addr, InitializeRequest{FunctionID: "tenant/fn-1", TimeoutMillis: 100})
	require.NoError(t, err)
	require.Equal(t, 1, ir.Attempts)
	require.Equal(t, int64(100), gotInit.TimeoutMillis)

	pr, err := c.Ping(ctx, addr)
	require.NoError(t, err)
	require.Equal(t, "ready", pr.State)

	st, err := c.Stats(ctx, addr)
	require.NoError(t, err)
	require.Equal(t, int64(7), st.Completed)
	require.Equal(t, time.Second, st.Uptime)

	wr, err := c.Watch(ctx, addr, AgentReady, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, WatchResponse{FunctionID: "tenant/fn-1", State: AgentExited, Exit: "signal: killed"}, wr)
}

func TestClientProtocolErrors(t *testing.T) {
	cases := []struct {
		code     ErrorCode
		sentinel error
	}{
		{CodeNoFunction, CodeNoFunction},
		{CodeFunctionExited, CodeFunctionExited},
		{CodeNotReady, CodeNotReady},
		{CodeInitFailed, CodeInitFailed},
	}
	for _, c := range cases {
		t.Run(string(c.code), func(t *testing.T) {
			addr := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				writeError(w, "rid-7", c.code, "because")
			})
			_, err := new(Client).Ping(context.Background(), addr)
			require.ErrorIs(t, err, c.sentinel)
			require.NotErrorIs(t, err, ErrUnreachable)
			require.NotErrorIs(t, err, ErrNoResponse)
			var pe *Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, &Error{Code: c.code, Message: "because", Status: c.code.Status(), RequestID: "rid-7"}, pe)
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	// A port nobody listens on: bind, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	_, err = new(Client).Load(context.Background(), Control{Addr: addr, Token: testToken}, goodLoad())
	require.ErrorIs(t, err, ErrUnreachable)
	require.NotErrorIs(t, err, ErrNoResponse)
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "load", ce.Op)
	require.Equal(t, addr, ce.Addr)
	require.False(t, ce.Reached)
	require.Contains(t, err.Error(), "unreachable")
}

func TestClientNoResponse(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathPing: // hang until the client gives up
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case PathStats: // not JSON
			_, _ = io.WriteString(w, "<html>")
		case PathLoad: // hijack and hang up without answering
			conn, _, err := w.(http.Hijacker).Hijack()
			require.NoError(t, err)
			_ = conn.Close()
		case PathInitialize: // too large
			_, _ = io.WriteString(w, `{"function_id":"`+strings.Repeat("x", 200)+`"}`)
		}
	})
	c, err := NewClient(ClientConfig{PingTimeout: 50 * time.Millisecond, MaxResponseBytes: 100})
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.Ping(ctx, addr)
	require.ErrorIs(t, err, ErrNoResponse)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, ErrUnreachable)

	_, err = c.Stats(ctx, addr)
	require.ErrorIs(t, err, ErrNoResponse)
	require.Contains(t, err.Error(), "malformed stats response")

	_, err = c.Load(ctx, addr, goodLoad())
	require.ErrorIs(t, err, ErrNoResponse)

	_, err = c.Initialize(ctx, addr, InitializeRequest{FunctionID: "f"})
	require.ErrorIs(t, err, ErrNoResponse)
	require.Contains(t, err.Error(), "larger than 100 bytes")
}

func TestClientHonoursCallerContext(t *testing.T) {
	addr := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := new(Client).Stats(ctx, addr)
	require.ErrorIs(t, err, context.Canceled)
}

func TestNewClientRejectsNegative(t *testing.T) {
	_, err := NewClient(ClientConfig{PingTimeout: -1})
	require.ErrorContains(t, err, "PingTimeout")
	_, err = NewClient(ClientConfig{MaxResponseBytes: -1})
	require.ErrorContains(t, err, "MaxResponseBytes")
}

// writeError answers as an agent refusing a request does, for the
// client's point of view: the status and the error headers.
func writeError(w http.ResponseWriter, rid string, c ErrorCode, msg string) {
	w.Header().Set(HeaderErrorCode, string(c))
	w.Header().Set(HeaderErrorMessage, msg)
	w.Header().Set(HeaderRequestID, rid)
	w.WriteHeader(c.Status())
}
