package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/faasplane/faas/internal/wire"
	"github.com/faasplane/faas/lifecycle"
)

// ErrUnknownProtocol is matched by the error of a function that speaks
// neither HTTP/1.1 nor HTTP/2 without TLS on its port.
var ErrUnknownProtocol = errors.New("agent: the function speaks neither HTTP/1.1 nor h2c")

// The probes of protocol detection. The HTTP/1.1 probe is OPTIONS *, which
// asks about the server, not a resource: Go's net/http answers it itself
// without calling the function's handler, and HTTP semantics make it safe.
// The HTTP/2 probe is the client connection preface with an empty SETTINGS
// frame (RFC 9113, section 3.4), which an HTTP/2 server answers with its own
// SETTINGS frame before any request.
var (
	http1Probe = []byte("OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: faas-agent-probe\r\nConnection: close\r\n\r\n")
	h2Probe    = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
)

// detectProtocol finds out whether the server at addr speaks HTTP/1.1 or
// h2c: first the HTTP/1.1 probe (an answer starting "HTTP/1." means
// HTTP/1.1; an HTTP/2 server that sends its SETTINGS at once means h2c),
// then, when that got no HTTP answer, the HTTP/2 preface (a SETTINGS frame
// back means h2c). Each probe has timeout. A server that speaks both is
// driven over HTTP/1.1; name "h2c" in the manifest for gRPC.
func detectProtocol(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	first, err1 := probe(ctx, addr, http1Probe, timeout)
	switch {
	case bytes.HasPrefix(first, []byte("HTTP/1.")):
		return lifecycle.ProtocolHTTP1, nil
	case isSettingsFrame(first):
		return lifecycle.ProtocolH2C, nil
	}
	second, err2 := probe(ctx, addr, h2Probe, timeout)
	if isSettingsFrame(second) {
		return lifecycle.ProtocolH2C, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("detecting the protocol: %w", context.Cause(ctx))
	}
	return "", fmt.Errorf("%w: to OPTIONS * it answered %s; to the HTTP/2 preface, %s",
		ErrUnknownProtocol, describeAnswer(first, err1), describeAnswer(second, err2))
}

// probe sends msg on a new connection to addr and returns the first bytes
// of the answer (at most 64), or what ended the wait.
func probe(ctx context.Context, addr string, msg []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 64)
	// An answer may come in pieces; 9 bytes tell a frame header, 7 "HTTP/1.".
	n, err := io.ReadAtLeast(conn, buf, 9)
	return buf[:n], err
}

// isSettingsFrame reports whether b starts with the header of an HTTP/2
// SETTINGS frame on stream 0 (a server's first frame).
func isSettingsFrame(b []byte) bool {
	if len(b) < 9 {
		return false
	}
	length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	stream := uint32(b[5]&0x7f)<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])
	return b[3] == 0x4 && stream == 0 && length%6 == 0 && length <= 1<<14
}

func describeAnswer(b []byte, err error) string {
	switch {
	case len(b) > 0:
		return fmt.Sprintf("%q", wire.SanitizeHeaderValue(string(b), 40))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "nothing (it closed the connection)"
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "nothing in time"
		}
		return "an error: " + err.Error()
	}
	return "nothing"
}
