package faas

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/lifecycle"
	"github.com/faasplane/faas/loadshed"
)

// sendHead opens a connection to srv and sends a POST's head that declares
// a body of length bytes, and no body.
func sendHead(t *testing.T, srv *httptest.Server, path string, length int64) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n", path, length)
	require.NoError(t, err)
	return c
}

// readStatus reads the status code of the response on c.
func readStatus(t *testing.T, c net.Conn) (int, http.Header) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// goroutinesIn counts the goroutines whose stack contains fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), fn)
}

// TestDeclaredBodyLengthAllocatesNothing is the regression test of the
// gateway that allocated each request's declared Content-Length before a
// byte arrived (150 idle connections took the heap from 25 MB to 902 MB):
// 150 connections declare bodies of the largest size allowed and send
// nothing; the heap grows by far less than one such body.
func TestDeclaredBodyLengthAllocatesNothing(t *testing.T) {
	e := newFakeEnv(t, newFakeAgents(), nil)
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1, RequestTimeout: time.Minute})
	gw := httptest.NewServer(e.dp)
	defer gw.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const conns = 150
	var open []net.Conn
	for range conns {
		open = append(open, sendHead(t, gw, "/invoke/f", DefaultMaxBodyBytes))
	}
	require.Eventually(t, func() bool { return goroutinesIn("(*Dataplane).readBody") == conns }, 30*time.Second, 10*time.Millisecond,
		"every request waits for its body")
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB for %d requests declaring %d MiB each", grown>>10, conns, DefaultMaxBodyBytes>>20)
	// A connection costs the server its buffers and its goroutine; the
	// body buffer adds at most bodyChunk.
	assert.Less(t, grown/conns, int64(2*bodyChunk+32<<10), "per request, a small buffer, not the declared size")
	for _, c := range open {
		_ = c.Close() // the handlers end at once
	}
}

// TestRefusalsComeBeforeTheBody: an unknown function, a body declared too
// large, a bad header and an overloaded dataplane are answered without
// waiting for a byte of the body.
func TestRefusalsComeBeforeTheBody(t *testing.T) {
	e := newFakeEnv(t, newFakeAgents(), func(c *Config) {
		c.DisableShedding = false
		c.Shedding = loadshed.Config{Capacity: 1, Burst: -1}
	})
	deployAndWarm(t, e, FunctionSpec{ID: "f", MinInstances: 1})
	gw := httptest.NewServer(e.dp)
	defer gw.Close()

	status, h := readStatus(t, sendHead(t, gw, "/invoke/nope", 1<<20))
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, string(lifecycle.CodeFunctionNotFound), h.Get(lifecycle.HeaderErrorCode))

	status, _ = readStatus(t, sendHead(t, gw, "/invoke/f", DefaultMaxBodyBytes+1))
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)

	c, err := net.Dial("tcp", gw.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST /invoke/f HTTP/1.1\r\nHost: gw\r\nX-Faas-Priority: urgent\r\nContent-Length: 100\r\n\r\n")
	require.NoError(t, err)
	status, _ = readStatus(t, c)
	assert.Equal(t, http.StatusBadRequest, status)

	// Admitted requests that wait for their bodies count as in flight:
	// four of them overload a capacity of one, and the shedder turns on.
	var held []net.Conn
	for range 4 {
		held = append(held, sendHead(t, gw, "/invoke/f", 100))
	}
	require.Eventually(t, func() bool { return goroutinesIn("(*Dataplane).readBody") == len(held) }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		status, _ := readStatus(t, sendHead(t, gw, "/invoke/f", 0))
		return status == http.StatusServiceUnavailable
	}, 30*time.Second, 10*time.Millisecond, "shedding turns on")
	// Shedding: a request that declares a body is refused without it.
	status, h = readStatus(t, sendHead(t, gw, "/invoke/f", 100))
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, string(lifecycle.CodeShed), h.Get(lifecycle.HeaderErrorCode))
	for _, c := range held {
		_, err = c.Write([]byte(strings.Repeat("x", 100)))
		require.NoError(t, err)
		status, _ = readStatus(t, c)
		assert.Equal(t, http.StatusOK, status, "a held request completes once its body arrives")
	}
}
