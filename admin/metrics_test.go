package admin_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/faasplane/faas/admin"
)

func TestMetricsExposition(t *testing.T) {
	_, err := admin.Metrics(nil, admin.MetricsConfig{})
	require.ErrorIs(t, err, admin.ErrInvalidConfig)
	dp := notStarted(t, "a", "b")
	_, err = admin.Metrics(dp, admin.MetricsConfig{MaxFunctions: -1})
	require.ErrorIs(t, err, admin.ErrInvalidConfig)
	h, err := admin.Metrics(dp, admin.MetricsConfig{MaxFunctions: 2})
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, admin.ContentType, rec.Header().Get("Content-Type"))
	body := rec.Body.String()
	assert.Contains(t, body, "# TYPE faas_requests_total counter\n")
	assert.Contains(t, body, `faas_requests_total{function="a",code="ok"} 0`+"\n")
	assert.Contains(t, body, `faas_requests_total{function="b",code="ok"} 0`+"\n")
	assert.Contains(t, body, `faas_requests_total{function="_other",code="ok"} 0`+"\n", "quiet, the third, is folded")
	assert.Contains(t, body, `faas_instances{function="a",state="ready"} 0`+"\n")
	assert.Contains(t, body, "faas_shedding 0\n")
	sample := regexp.MustCompile(`^faas_[a-z_]+(\{([a-z_]+="[^"\\]*",?)+\})? -?[0-9.e+]+$`)
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if strings.HasPrefix(line, "# ") {
			require.Regexp(t, `^# (HELP|TYPE) faas_[a-z_]+ .+$`, line)
			continue
		}
		require.Regexp(t, sample, line)
	}
}
