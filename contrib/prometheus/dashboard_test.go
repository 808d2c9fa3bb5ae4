package prometheus_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	faasprom "github.com/faasplane/faas/contrib/prometheus"
)

// exported returns the names of every metric the three collectors
// describe, with the series names of their histograms.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m, err := faasprom.New(faasprom.Config{})
	require.NoError(t, err)
	agents, err := faasprom.NewAgentCollector(nil, m, faasprom.AgentConfig{})
	require.NoError(t, err)
	ch := make(chan *prom.Desc, 256)
	for _, c := range []prom.Collector{m, faasprom.NewStatsCollector(nil, m), agents} {
		c.Describe(ch)
	}
	close(ch)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		match := fq.FindStringSubmatch(d.String())
		require.NotNil(t, match, d.String())
		names[match[1]] = true
	}
	return names
}

// TestDashboardNamesOnlyExportedMetrics: every metric the Grafana dashboard
// queries exists.
func TestDashboardNamesOnlyExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("dashboards/faasplane.json")
	require.NoError(t, err)
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.UID)
	require.NotEmpty(t, dash.Panels)

	var exprs []string
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		require.False(t, ids[p.ID], "panel ids are unique: %d", p.ID)
		ids[p.ID] = true
		require.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs = append(exprs, q["query"].(string))
		}
	}
	names := exported(t)
	metric := regexp.MustCompile(`\bfaas_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metric.FindAllString(e, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && names[b] {
					base = b
				}
			}
			assert.True(t, names[base], "the dashboard queries %s, which is not exported (in %q)", n, e)
			used[base] = true
		}
	}
	// And the dashboard shows every metric: a new one needs a panel.
	for n := range names {
		assert.True(t, used[n], "no panel shows %s", n)
	}
}
