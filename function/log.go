package function

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
)

// HeaderRequestID is the header that carries an invocation's request ID
// (lifecycle.HeaderRequestID; the SDK does not import the protocol).
const HeaderRequestID = "X-Faas-Request-Id"

// RequestID returns the request ID of the invocation r ("" when it has
// none).
func RequestID(r *http.Request) string { return r.Header.Get(HeaderRequestID) }

// stderrJSON is the one handler on stderr, so that the records of
// concurrent invocations never interleave.
var stderrJSON = sync.OnceValue(func() slog.Handler { return slog.NewJSONHandler(os.Stderr, nil) })

// Logger returns a logger for the invocation r: it writes JSON lines to
// stderr ({"time", "level", "msg", "request_id", ...attributes}), which the
// agent turns into structured log records that carry the function's ID,
// its instance and r's request ID. Plain lines on stdout and stderr are
// recorded too, without a request ID.
func Logger(r *http.Request) *slog.Logger { return loggerFor(stderrJSON(), r) }

func loggerFor(h slog.Handler, r *http.Request) *slog.Logger {
	return slog.New(h).With("request_id", RequestID(r))
}

// NewLogger returns a logger that writes the JSON lines the agent parses
// to w, for output that belongs to no invocation (Logger for those that
// do).
func NewLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }
