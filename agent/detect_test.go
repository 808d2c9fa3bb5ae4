package agent

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/faasplane/faas/lifecycle"
	"github.com/stretchr/testify/require"
)

// serveRaw serves each connection of a new loopback listener with f.
func serveRaw(t *testing.T, f func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// serveHTTP serves a handler that fails the test if it is ever called:
// the probes must not reach a function's code.
func serveHTTP(t *testing.T, http1, h2c bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var p http.Protocols
	p.SetHTTP1(http1)
	p.SetUnencryptedHTTP2(h2c)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a probe reached the handler: %s %s", r.Method, r.RequestURI)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestDetectProtocol(t *testing.T) {
	cases := []struct {
		name    string
		addr    func(t *testing.T) string
		want    string
		errPart string
	}{
		{"HTTP/1.1 only", func(t *testing.T) string { return serveHTTP(t, true, false) }, lifecycle.ProtocolHTTP1, ""},
		{"h2c only", func(t *testing.T) string { return serveHTTP(t, false, true) }, lifecycle.ProtocolH2C, ""},
		{"both: HTTP/1.1", func(t *testing.T) string { return serveHTTP(t, true, true) }, lifecycle.ProtocolHTTP1, ""},
		{"h2c server that greets first", func(t *testing.T) string {
			return serveRaw(t, func(c net.Conn) {
				_, _ = c.Write([]byte("\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"))
				_ = c.Close()
			})
		}, lifecycle.ProtocolH2C, ""},
		{"speaks SSH", func(t *testing.T) string {
			return serveRaw(t, func(c net.Conn) { _, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n")); _ = c.Close() })
		}, "", `"SSH-2.0-OpenSSH_9.6`},
		{"closes at once", func(t *testing.T) string { return serveRaw(t, func(c net.Conn) { _ = c.Close() }) }, "", "closed the connection"},
		{"says nothing", func(t *testing.T) string {
			held := make(chan net.Conn, 4)
			t.Cleanup(func() {
				close(held)
				for c := range held {
					_ = c.Close()
				}
			})
			return serveRaw(t, func(c net.Conn) { held <- c })
		}, "", "nothing in time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := detectProtocol(context.Background(), c.addr(t), 200*time.Millisecond)
			if c.errPart != "" {
				require.ErrorIs(t, err, ErrUnknownProtocol)
				require.ErrorContains(t, err, c.errPart)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

// TestLoadDetectsTheProtocol: a manifest without a protocol gets the
// agent's detection, recorded in the load's answer and the stats; a
// function that speaks neither fails the load clearly.
func TestLoadDetectsTheProtocol(t *testing.T) {
	ctx := context.Background()
	t.Run("HTTP/1.1", func(t *testing.T) {
		h := newHarness(t, nil)
		lr := h.loadReady("hello", "hello", helloManifest, nil)
		require.Equal(t, lifecycle.ProtocolHTTP1, lr.Protocol)
		require.Equal(t, lifecycle.ProtocolDetected, lr.ProtocolSource)
		require.Positive(t, lr.Timings.ProbeMillis)
		require.Equal(t, "HTTP/1.1", h.mustInvoke("hello", "/").header.Get("X-Hello-Proto"))
		st, err := h.client.Stats(ctx, h.ctl)
		require.NoError(t, err)
		require.Equal(t, lifecycle.ProtocolHTTP1, st.Protocol)
		require.Equal(t, lifecycle.ProtocolDetected, st.ProtocolSource)
	})
	t.Run("h2c", func(t *testing.T) {
		h := newHarness(t, nil)
		lr := h.loadReady("grpc", "hello", `{"command": "./hello", "env": {"HELLO_H2C": "only"}}`, nil)
		require.Equal(t, lifecycle.ProtocolH2C, lr.Protocol)
		require.Equal(t, lifecycle.ProtocolDetected, lr.ProtocolSource)
		require.Equal(t, "HTTP/2.0", h.mustInvoke("grpc", "/").header.Get("X-Hello-Proto"))
		st, err := h.client.Stats(ctx, h.ctl)
		require.NoError(t, err)
		require.Equal(t, lifecycle.ProtocolH2C, st.Protocol)
	})
	t.Run("named", func(t *testing.T) {
		h := newHarness(t, nil)
		lr := h.loadReady("h1", "hello", helloManifest, func(r *lifecycle.LoadRequest) { r.Protocol = lifecycle.ProtocolHTTP1 })
		require.Equal(t, lifecycle.ProtocolFromRequest, lr.ProtocolSource)
		require.Zero(t, lr.Timings.ProbeMillis)
	})
	t.Run("neither", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.ProbeTimeout = 300 * time.Millisecond })
		// A process that listens on PORT and answers like an SSH server.
		ref := h.publish("ssh.tar.gz", binPackage(t, "hello", helloManifest))
		_, err := h.load("ssh", ref, func(r *lifecycle.LoadRequest) {
			r.Command = "python3"
			r.Args = []string{"-c", `import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"); c.close()`}
		})
		require.ErrorIs(t, err, lifecycle.CodeLoadFailed)
		require.ErrorContains(t, err, "neither HTTP/1.1 nor h2c")
		require.ErrorContains(t, err, "SSH-2.0")
		h.requireNothingLeft()
	})
}

func FuzzIsSettingsFrame(f *testing.F) {
	f.Add([]byte("\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if isSettingsFrame(b) {
			require.GreaterOrEqual(t, len(b), 9)
			require.Equal(t, byte(4), b[3])
		}
		_ = describeAnswer(b, nil)
	})
}
