package conformance

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// client calls a bootstrap's port over HTTP/1.1 with keep-alive, as the
// agent's proxy does.
type client struct {
	addr string
	tr   *http.Transport
	hc   *http.Client
}

func newClient(addr string) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true, IdleConnTimeout: time.Minute}
	return &client{addr: addr, tr: tr, hc: &http.Client{Transport: tr}}
}

func (c *client) close() { c.tr.CloseIdleConnections() }

type result struct {
	status int
	header http.Header
	body   string
}

func (c *client) request(ctx context.Context, method, path, body string, header map[string]string) (*http.Request, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.addr+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Faas-Function-Id", "conformance")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req, nil
}

func (c *client) send(ctx context.Context, method, path, body string, header map[string]string) (result, error) {
	req, err := c.request(ctx, method, path, body, header)
	if err != nil {
		return result{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}, err
}

// do sends a request and fails the test when no answer comes.
func (c *client) do(t *testing.T, ctx context.Context, method, path, body string, header map[string]string) result {
	t.Helper()
	r, err := c.send(ctx, method, path, body, header)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
	}
	return r
}

// open sends a GET and returns the response with its body unread.
func (c *client) open(t *testing.T, ctx context.Context, path string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := c.request(ctx, "GET", path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return resp, bufio.NewReader(resp.Body)
}

func dial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
