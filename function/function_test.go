package function

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = fmt.Fprintf(w, "hello %s via %s", r.URL.Path, r.Proto)
})

func do(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestHandlerWithoutInit(t *testing.T) {
	h := Handler(hello)
	code, body, _ := do(t, h, "GET", "/x")
	require.Equal(t, 200, code)
	require.Equal(t, "hello /x via HTTP/1.1", body)
	code, body, _ = do(t, h, "POST", InitPath)
	require.Equal(t, 200, code)
	require.Equal(t, "already initialized\n", body)
}

func TestHandlerInitFailsThenSucceeds(t *testing.T) {
	calls := 0
	h := Handler(hello, WithInit(func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return fmt.Errorf("database unreachable (attempt %d)", calls)
		}
		return nil
	}))
	code, body, _ := do(t, h, "GET", "/x")
	require.Equal(t, 503, code, "gated before init")
	require.Contains(t, body, "not initialized")

	for i := 1; i <= 2; i++ {
		code, body, hdr := do(t, h, "POST", InitPath)
		require.Equal(t, 500, code)
		require.Equal(t, fmt.Sprintf("database unreachable (attempt %d)\n", i), body)
		require.Equal(t, strconv.Itoa(i), hdr.Get("X-Faas-Init-Attempts"))
		code, _, _ = do(t, h, "GET", "/x")
		require.Equal(t, 503, code)
	}
	code, body, hdr := do(t, h, "POST", InitPath)
	require.Equal(t, 200, code)
	require.Equal(t, "initialized\n", body)
	require.Equal(t, "3", hdr.Get("X-Faas-Init-Attempts"))

	// After success: a no-op that does not run init again.
	code, body, _ = do(t, h, "POST", InitPath)
	require.Equal(t, 200, code)
	require.Equal(t, "already initialized\n", body)
	require.Equal(t, 3, calls)
	code, _, _ = do(t, h, "GET", "/x")
	require.Equal(t, 200, code)
}

func TestHandlerInitPanicIsAFailure(t *testing.T) {
	h := Handler(hello, WithInit(func(context.Context) error { panic("boom") }))
	code, body, _ := do(t, h, "POST", InitPath)
	require.Equal(t, 500, code)
	require.Contains(t, body, "init panicked: boom")
}

func TestHandlerInitPathAndMethod(t *testing.T) {
	h := Handler(hello, WithInitPath("/custom-init"), WithInit(func(context.Context) error { return nil }))
	code, _, hdr := do(t, h, "GET", "/custom-init")
	require.Equal(t, 405, code)
	require.Equal(t, "POST", hdr.Get("Allow"))
	code, _, _ = do(t, h, "POST", InitPath) // not the hook any more: gated
	require.Equal(t, 503, code)
	code, _, _ = do(t, h, "POST", "/custom-init")
	require.Equal(t, 200, code)
}

func TestServeListenerShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, hello) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/y")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hello /y via HTTP/1.1", string(b))
	cancel()
	require.NoError(t, <-done)
	http.DefaultClient.CloseIdleConnections()
}

func TestServeListenerH2C(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, hello, WithH2C()) }()

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/g")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hello /g via HTTP/2.0", string(b))
	cancel()
	require.NoError(t, <-done)
}

func TestServeNeedsPort(t *testing.T) {
	for _, v := range []string{"", "x", "0", "70000"} {
		t.Setenv("PORT", v)
		require.ErrorIs(t, Serve(hello), ErrNoPort)
	}
}

func TestServeReadsPortAndStopsOnSIGTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	t.Setenv("PORT", port)

	done := make(chan error, 1)
	go func() { done <- Serve(hello) }()
	// A served request proves Serve is past signal.NotifyContext, so the
	// SIGTERM below reaches it and not the default handler.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var body string
	for body == "" {
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		resp, err := client.Get("http://127.0.0.1:" + port + "/s")
		if err != nil {
			var errno syscall.Errno
			require.True(t, errors.As(err, &errno) && errno == syscall.ECONNREFUSED, "unexpected error %v", err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
	require.True(t, strings.HasPrefix(body, "hello /s"))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	require.NoError(t, <-done)
}

// TestServeListenerH2COnly: HTTP/2 works, an HTTP/1.1 request does not,
// as with a gRPC server.
func TestServeListenerH2COnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, hello, WithH2COnly()) }()

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/g")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hello /g via HTTP/2.0", string(b))

	tr1 := &http.Transport{}
	defer tr1.CloseIdleConnections()
	_, err = (&http.Client{Transport: tr1}).Get("http://" + ln.Addr().String() + "/g")
	require.Error(t, err, "HTTP/1.1 is refused")
	cancel()
	require.NoError(t, <-done)
}
