package function

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoggerWritesTheLinesTheAgentParses: one JSON object per line with
// msg, level, time and the request's ID.
func TestLoggerWritesTheLinesTheAgentParses(t *testing.T) {
	var buf bytes.Buffer
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set(HeaderRequestID, "req-9")
	require.Equal(t, "req-9", RequestID(r))
	loggerFor(slog.NewJSONHandler(&buf, nil), r).Warn("cache miss", "key", "k1")
	NewLogger(&buf).Info("no request")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &rec))
	require.Equal(t, "cache miss", rec["msg"])
	require.Equal(t, "WARN", rec["level"])
	require.Equal(t, "req-9", rec["request_id"])
	require.Equal(t, "k1", rec["key"])
	require.NotEmpty(t, rec["time"])
	require.NoError(t, json.Unmarshal(lines[1], &rec))
	require.Equal(t, "no request", rec["msg"])
}
