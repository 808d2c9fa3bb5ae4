package faas

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/faasplane/faas/lifecycle"
)

// InvokePathPrefix is the gateway's path form: /invoke/{function-id}[/rest].
// The function ID is one path segment, so an ID containing "/" is written
// with "%2F"; the rest of the path, if any, is passed to the function.
const InvokePathPrefix = "/invoke/"

// maxRequestIDLen bounds an incoming X-Faas-Request-Id; a longer or
// non-printable one is replaced by a generated ID.
const maxRequestIDLen = 128

// route is what the gateway reads from a request before admission.
type route struct {
	functionID string
	// path is the path to send to the function: the request's path for
	// the header form, the rest after the ID for the path form ("/" when
	// empty).
	path string
}

// parseRoute extracts the function ID and the function's path from r: the
// header X-Faas-Function-Id, or the path /invoke/{id}[/rest]. Both may be
// given only if they agree.
func parseRoute(r *http.Request) (route, *lifecycle.Error) {
	header := r.Header.Get(lifecycle.HeaderFunctionID)
	if len(r.Header.Values(lifecycle.HeaderFunctionID)) > 1 {
		return route{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "more than one %s header", lifecycle.HeaderFunctionID)
	}
	rt := route{functionID: header, path: r.URL.EscapedPath()}
	if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), InvokePathPrefix); ok {
		seg, tail, _ := strings.Cut(rest, "/")
		id, err := url.PathUnescape(seg)
		if err != nil {
			return route{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "malformed function ID in path: %v", err)
		}
		if header != "" && header != id {
			return route{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "%s %q does not match the path's function %q", lifecycle.HeaderFunctionID, header, id)
		}
		rt.functionID, rt.path = id, "/"+tail
	}
	if rt.functionID == "" {
		return route{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "no function: set %s or use the path %s{id}", lifecycle.HeaderFunctionID, InvokePathPrefix)
	}
	if err := lifecycle.ValidFunctionID(rt.functionID); err != nil {
		return route{}, lifecycle.Errorf(lifecycle.CodeBadRequest, "%v", err)
	}
	if !strings.HasPrefix(rt.path, "/") {
		rt.path = "/" + rt.path // "*" (OPTIONS) or a hand-built request
	}
	return rt, nil
}

// validRequestID reports whether id can be echoed as X-Faas-Request-Id:
// 1 to 128 bytes of printable ASCII without spaces.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// requestIDs generates request IDs: a random per-process prefix and a
// counter, which is unique, ordered within a process, and costs one atomic
// add instead of a read of the system's random source per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}
