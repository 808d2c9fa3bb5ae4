package code

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Defaults of [HTTPConfig].
const (
	DefaultHTTPTimeout = 5 * time.Minute
	DefaultHTTPMaxSize = 1 << 30
)

// ErrFetch reports a store that could not deliver a package it may have: a
// connection failure, a timeout, an unexpected HTTP status. Retrying later
// or elsewhere may succeed; it is not the package's fault.
var ErrFetch = errors.New("code: fetch failed")

// HTTPConfig configures an [HTTPStore]. The zero value is valid.
type HTTPConfig struct {
	// Client sends the requests. Nil means a client with its own
	// transport: 5 s to connect, 10 s for the TLS handshake, 30 s until
	// the response header, 4 idle connections per host, proxy from the
	// environment.
	Client *http.Client
	// Timeout bounds a whole fetch, body included. Default 5 minutes.
	Timeout time.Duration
	// MaxSize caps the size of a package: a Ref or a Content-Length above
	// it is ErrTooLarge before a byte of body is read. Default 1 GiB.
	MaxSize int64
	// Header is added to every request (e.g. Authorization).
	Header http.Header
}

// HTTPStore is an origin store that fetches packages with GET from the
// http:// or https:// URI of their Ref. It is safe for concurrent use.
type HTTPStore struct {
	cfg HTTPConfig
}

// NewHTTPStore returns an HTTP store, or an error for a negative timeout or
// size.
func NewHTTPStore(cfg HTTPConfig) (*HTTPStore, error) {
	if cfg.Timeout < 0 || cfg.MaxSize < 0 {
		return nil, errors.New("code: HTTPConfig.Timeout and MaxSize must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHTTPTimeout
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultHTTPMaxSize
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	cfg.Header = cfg.Header.Clone()
	return &HTTPStore{cfg: cfg}, nil
}

// Open GETs ref.URI. 404 and 410 are ErrNotFound; other non-200 answers,
// connection failures and timeouts are ErrFetch; a package above MaxSize is
// ErrTooLarge and a Content-Length other than ref.Size ErrSizeMismatch. The
// returned reader yields exactly ref.Size bytes or fails with
// ErrSizeMismatch (too long or too short) or ErrFetch (timeout, reset);
// closing it ends the request. The digest is not checked here.
func (s *HTTPStore) Open(ctx context.Context, ref Ref) (io.ReadCloser, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	if ref.Size > s.cfg.MaxSize {
		return nil, fmt.Errorf("%w: %s has %d bytes, cap %d", ErrTooLarge, ref.Digest, ref.Size, s.cfg.MaxSize)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.URI, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %v", ErrInvalidRef, err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		cancel()
		return nil, fmt.Errorf("%w: %q is not an http(s) URI", ErrInvalidRef, short(ref.URI))
	}
	for k, v := range s.cfg.Header {
		req.Header[k] = v
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: GET %s: %w", ErrFetch, short(ref.URI), err)
	}
	fail := func(err error) (io.ReadCloser, error) {
		_ = resp.Body.Close()
		cancel()
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fail(fmt.Errorf("%w: GET %s: HTTP %d", ErrNotFound, short(ref.URI), resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return fail(fmt.Errorf("%w: GET %s: HTTP %d", ErrFetch, short(ref.URI), resp.StatusCode))
	case resp.ContentLength > s.cfg.MaxSize:
		return fail(fmt.Errorf("%w: GET %s: Content-Length %d above cap %d", ErrTooLarge, short(ref.URI), resp.ContentLength, s.cfg.MaxSize))
	case resp.ContentLength >= 0 && resp.ContentLength != ref.Size:
		return fail(fmt.Errorf("%w: GET %s: Content-Length %d, reference says %d", ErrSizeMismatch, short(ref.URI), resp.ContentLength, ref.Size))
	}
	return &httpBody{body: resp.Body, cancel: cancel, ref: ref}, nil
}

// httpBody delivers exactly ref.Size bytes and ends the request on Close.
type httpBody struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	ref    Ref
	n      int64
}

func (b *httpBody) Read(p []byte) (int, error) {
	if rem := b.ref.Size - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case b.n > b.ref.Size:
		return 0, fmt.Errorf("%w: %s sent more than %d bytes", ErrSizeMismatch, short(b.ref.URI), b.ref.Size)
	case err == io.EOF && b.n < b.ref.Size:
		return n, fmt.Errorf("%w: %s sent %d of %d bytes", ErrSizeMismatch, short(b.ref.URI), b.n, b.ref.Size)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("%w: reading %s: %w", ErrFetch, short(b.ref.URI), err)
	}
	return n, err
}

func (b *httpBody) Close() error {
	err := b.body.Close()
	b.cancel()
	return err
}
