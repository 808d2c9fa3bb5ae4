package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Default timeouts and limits of a [Client]; see [ClientConfig].
const (
	DefaultLoadTimeout       = 60 * time.Second
	DefaultInitializeTimeout = 30 * time.Second
	DefaultPingTimeout       = 2 * time.Second
	DefaultStatsTimeout      = 2 * time.Second
	DefaultMaxResponseBytes  = 1 << 20
)

// ClientConfig configures a [Client]. The zero value is valid: every zero
// field takes the documented default.
type ClientConfig struct {
	// HTTPClient sends the requests. Nil means a client with its own
	// transport: keep-alive, up to 4 idle connections per agent kept for
	// 90 s, a 5 s dial timeout, no proxy from the environment (agents are
	// on the pod network or loopback). Its Timeout should be zero: the
	// per-call timeouts below bound each call.
	HTTPClient *http.Client
	// LoadTimeout bounds POST /v1/load, which fetches, verifies and
	// unpacks a package and starts a process. Default 60 s.
	LoadTimeout time.Duration
	// InitializeTimeout bounds POST /v1/initialize when the request sets
	// no TimeoutMillis; when it does, the call waits that long plus one
	// second, so the agent's own init_failed answer arrives before the
	// client gives up. Default 30 s.
	InitializeTimeout time.Duration
	// PingTimeout bounds GET /v1/ping. Default 2 s.
	PingTimeout time.Duration
	// StatsTimeout bounds GET /v1/stats. Default 2 s.
	StatsTimeout time.Duration
	// MaxResponseBytes bounds a response body the client decodes; a
	// larger one fails with ErrNoResponse. Default 1 MiB.
	MaxResponseBytes int64
}

// Client calls the runtime agent's control endpoints. It is safe for
// concurrent use, and its zero value is ready to use with the defaults of
// [ClientConfig]. Each method takes the pod's [Control] (the address of the
// agent's control listener and the pod's token) and returns:
//
//   - the decoded body on a 2xx answer;
//   - an [*Error] when the agent answered with an error (match it with
//     errors.Is against CodeNoFunction, CodeInitFailed, ...);
//   - a [*CallError] matching [ErrUnreachable] when no connection to the
//     agent could be made, so the request never reached it;
//   - a [*CallError] matching [ErrNoResponse] when the request may have
//     reached the agent but no usable answer came back (timeout, reset,
//     malformed body). It also matches context.DeadlineExceeded or
//     context.Canceled when that is the cause.
type Client struct {
	cfg  ClientConfig
	once sync.Once
	hc   *http.Client
}

// NewClient returns a Client configured by cfg, or an error when a timeout
// or limit is negative.
func NewClient(cfg ClientConfig) (*Client, error) {
	for name, d := range map[string]time.Duration{
		"LoadTimeout": cfg.LoadTimeout, "InitializeTimeout": cfg.InitializeTimeout,
		"PingTimeout": cfg.PingTimeout, "StatsTimeout": cfg.StatsTimeout,
	} {
		if d < 0 {
			return nil, fmt.Errorf("lifecycle: ClientConfig.%s must not be negative, got %v", name, d)
		}
	}
	if cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("lifecycle: ClientConfig.MaxResponseBytes must not be negative, got %d", cfg.MaxResponseBytes)
	}
	return &Client{cfg: cfg}, nil
}

func (c *Client) init() {
	c.once.Do(func() {
		if c.cfg.LoadTimeout == 0 {
			c.cfg.LoadTimeout = DefaultLoadTimeout
		}
		if c.cfg.InitializeTimeout == 0 {
			c.cfg.InitializeTimeout = DefaultInitializeTimeout
		}
		if c.cfg.PingTimeout == 0 {
			c.cfg.PingTimeout = DefaultPingTimeout
		}
		if c.cfg.StatsTimeout == 0 {
			c.cfg.StatsTimeout = DefaultStatsTimeout
		}
		if c.cfg.MaxResponseBytes == 0 {
			c.cfg.MaxResponseBytes = DefaultMaxResponseBytes
		}
		c.hc = c.cfg.HTTPClient
		if c.hc == nil {
			c.hc = &http.Client{Transport: &http.Transport{
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:          1024,
				MaxIdleConnsPerHost:   4,
				IdleConnTimeout:       90 * time.Second,
				ExpectContinueTimeout: time.Second,
			}}
		}
	})
}

// Load sends POST /v1/load: the agent fetches, verifies and unpacks the
// code, starts the function process and answers once it listens.
func (c *Client) Load(ctx context.Context, ctl Control, req LoadRequest) (LoadResponse, error) {
	c.init()
	var resp LoadResponse
	err := c.call(ctx, "load", ctl, http.MethodPost, PathLoad, c.cfg.LoadTimeout, &req, &resp)
	return resp, err
}

// Initialize sends POST /v1/initialize: the agent calls the function's init
// hook once. An init failure is an [*Error] matching CodeInitFailed; the
// process is kept, and calling Initialize again retries the hook.
func (c *Client) Initialize(ctx context.Context, ctl Control, req InitializeRequest) (InitializeResponse, error) {
	c.init()
	timeout := c.cfg.InitializeTimeout
	if req.TimeoutMillis > 0 {
		timeout = time.Duration(req.TimeoutMillis)*time.Millisecond + time.Second
	}
	var resp InitializeResponse
	err := c.call(ctx, "initialize", ctl, http.MethodPost, PathInitialize, timeout, &req, &resp)
	return resp, err
}

// Ping sends GET /v1/ping. A generic warm pod answers with an error
// matching CodeNoFunction, an instance whose process died with one matching
// CodeFunctionExited, and one still loading with CodeNotReady.
func (c *Client) Ping(ctx context.Context, ctl Control) (PingResponse, error) {
	c.init()
	var resp PingResponse
	err := c.call(ctx, "ping", ctl, http.MethodGet, PathPing, c.cfg.PingTimeout, nil, &resp)
	return resp, err
}

// Stats sends GET /v1/stats and returns the agent's counters.
func (c *Client) Stats(ctx context.Context, ctl Control) (Stats, error) {
	c.init()
	var resp Stats
	err := c.call(ctx, "stats", ctl, http.MethodGet, PathStats, c.cfg.StatsTimeout, nil, &resp)
	return resp, err
}

// Watch sends GET /v1/watch: it returns as soon as the agent's state
// differs from known (one of the Agent... states), or with the unchanged
// state after wait (zero: DefaultWatchWait; at most MaxWatchWait). The call
// is bounded by wait plus PingTimeout.
func (c *Client) Watch(ctx context.Context, ctl Control, known string, wait time.Duration) (WatchResponse, error) {
	c.init()
	if wait <= 0 {
		wait = DefaultWatchWait
	}
	wait = min(wait, MaxWatchWait)
	path := PathWatch + "?" + url.Values{"state": {known}, "wait": {wait.String()}}.Encode()
	var resp WatchResponse
	err := c.call(ctx, "watch", ctl, http.MethodGet, path, wait+c.cfg.PingTimeout, nil, &resp)
	return resp, err
}

// Errors of the client's transport; test with errors.Is. Both are carried by
// a [*CallError].
var (
	// ErrUnreachable: no connection to the agent could be made (refused,
	// no route, dial timeout), so the request never reached it. A load
	// that fails this way was not started.
	ErrUnreachable = errors.New("lifecycle: agent unreachable")
	// ErrNoResponse: the request may have reached the agent, but no
	// usable answer came back (timeout, reset, malformed body).
	ErrNoResponse = errors.New("lifecycle: no usable response from agent")
)

// CallError is a failed call that the agent did not answer with a protocol
// error. It matches ErrUnreachable or ErrNoResponse, and also whatever its
// cause Err matches (e.g. context.DeadlineExceeded).
type CallError struct {
	// Op is the call: "load", "initialize", "ping", "stats" or "watch".
	Op string
	// Addr is the agent's host:port.
	Addr string
	// Reached is false when no connection was made (ErrUnreachable).
	Reached bool
	// Err is the cause.
	Err error
}

func (e *CallError) Error() string {
	kind := "unreachable"
	if e.Reached {
		kind = "no usable response"
	}
	return fmt.Sprintf("lifecycle: %s %s: agent %s: %v", e.Op, e.Addr, kind, e.Err)
}

// Unwrap returns the kind sentinel and the cause.
func (e *CallError) Unwrap() []error {
	if e.Reached {
		return []error{ErrNoResponse, e.Err}
	}
	return []error{ErrUnreachable, e.Err}
}

func (c *Client) call(ctx context.Context, op string, ctl Control, method, path string, timeout time.Duration, in, out any) error {
	addr := ctl.Addr
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var body io.Reader
	if in != nil {
		b, err := encodeJSON(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	// The connection is the boundary between "never reached" and "may
	// have reached": once one is obtained, the request may be processed.
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return &CallError{Op: op, Addr: addr, Err: err}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", authScheme+ctl.Token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return &CallError{Op: op, Addr: addr, Reached: connected.Load(), Err: err}
	}
	defer resp.Body.Close()
	if perr := ErrorFromResponse(resp); perr != nil {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return perr
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return &CallError{Op: op, Addr: addr, Reached: true, Err: err}
	}
	if int64(len(b)) > c.cfg.MaxResponseBytes {
		return &CallError{Op: op, Addr: addr, Reached: true, Err: fmt.Errorf("response body larger than %d bytes", c.cfg.MaxResponseBytes)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &CallError{Op: op, Addr: addr, Reached: true, Err: fmt.Errorf("malformed %s response (HTTP %d): %w", op, resp.StatusCode, err)}
	}
	return nil
}
