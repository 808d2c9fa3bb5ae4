// Package httpx is the HTTP plumbing of the Dataplane's hops: building the
// request a hop sends on, and streaming the answer back. It does what
// net/http/httputil.ReverseProxy does for the cases faasplane needs,
// without its callbacks: the caller makes the round trip itself, looks at
// the response before anything is written (an agent's refusal is retried on
// another instance, not relayed), and then copies it. Hop-by-hop headers
// are dropped both ways (RFC 9110, section 7.6.1), trailers are relayed,
// and responses are flushed as their bytes arrive, so that streaming
// answers (server-sent events, long polls) stream.
package httpx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 and the ones proxies
// have used: they describe one connection, not the message.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers of h, and those that its
// Connection header names.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// Outgoing returns the request to send on to host for in: same method,
// headers (without the hop-by-hop ones; "TE: trailers" is kept, since the
// next hop may send trailers), the escaped path (with in's query), the body
// body (length n; nil for none), on ctx. X-Forwarded-For is set to in's
// client address, replacing whatever the client claimed: the first hop is
// the one that knows.
func Outgoing(ctx context.Context, in *http.Request, host, escapedPath string, body func() io.ReadCloser, n int64) *http.Request {
	out := in.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host, out.Host = "http", host, host
	out.URL.Path, out.URL.RawPath = unescape(escapedPath), escapedPath
	out.URL.RawQuery = in.URL.RawQuery
	out.URL.Fragment = ""
	trailers := hasToken(in.Header, "Te", "trailers")
	removeHopHeaders(out.Header)
	if trailers {
		out.Header.Set("Te", "trailers")
	}
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		out.Header.Set("X-Forwarded-For", ip)
	} else {
		out.Header.Del("X-Forwarded-For")
	}
	out.Close = false
	SetBody(out, body, n)
	return out
}

// SetBody gives r the body that body opens (length n; body nil: none).
// GetBody lets the transport resend it on a reused connection that turns
// out to be dead before anything was written to it.
func SetBody(r *http.Request, body func() io.ReadCloser, n int64) {
	if body == nil || n == 0 {
		r.Body, r.GetBody, r.ContentLength = http.NoBody, nil, 0
		return
	}
	r.Body, r.ContentLength = body(), n
	r.GetBody = func() (io.ReadCloser, error) { return body(), nil }
}

func unescape(p string) string {
	// An escaped path that does not unescape is sent as is: the next hop
	// decides.
	s, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return s
}

func hasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}

// bufferSize is the size of the copy buffers.
const bufferSize = 32 << 10

// buffers recycles copy buffers; it pools array pointers, so that a
// recycled buffer costs no allocation.
var buffers = sync.Pool{New: func() any { return new([bufferSize]byte) }}

// ErrAborted is returned by CopyResponse once the status line is out: the
// answer broke off (the client went away, or the next hop did) and cannot
// be retried nor replaced by an error response; the handler should abort
// the connection (panic(http.ErrAbortHandler)).
var ErrAborted = errors.New("httpx: response aborted after it started")

// AbortError is an ErrAborted that says which side broke off.
type AbortError struct {
	// Upstream is true when reading the response failed (the next hop
	// broke off), false when writing it to the client failed.
	Upstream bool
	Err      error
}

func (e *AbortError) Error() string {
	side := "client"
	if e.Upstream {
		side = "upstream"
	}
	return "httpx: response aborted by the " + side + ": " + e.Err.Error()
}

// Unwrap returns ErrAborted and the cause.
func (e *AbortError) Unwrap() []error { return []error{ErrAborted, e.Err} }

// CopyResponse writes resp to w: its headers (without the hop-by-hop ones)
// plus extra, its status, its body flushed as it arrives, and its trailers.
// It closes resp.Body. An error after the status line was written is an
// *AbortError.
func CopyResponse(w http.ResponseWriter, resp *http.Response, extra http.Header) error {
	defer resp.Body.Close()
	h := w.Header()
	removeHopHeaders(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for k, vv := range extra {
		h[k] = vv
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Set("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	if err := copyBody(w, resp.Body); err != nil {
		return err
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return nil
}

// copyBody copies src to w, flushing after every write.
func copyBody(w http.ResponseWriter, src io.Reader) error {
	buf := buffers.Get().(*[bufferSize]byte)
	defer buffers.Put(buf)
	rc := http.NewResponseController(w)
	for {
		n, rerr := src.Read(buf[:])
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return &AbortError{Err: err}
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return &AbortError{Err: err}
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return &AbortError{Upstream: true, Err: rerr}
		}
	}
}
