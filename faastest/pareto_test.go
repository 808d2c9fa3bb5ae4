package faastest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParetoPoints(t *testing.T) {
	r := &Report{Total: Stats{ColdStartRatio: 0.25, IdleGBSeconds: 42}}
	for i, ratio := range []float64{0, 0.1, 0.2, 0.5, 1, 0.3, 0.05, 0.9} {
		r.Functions = append(r.Functions, FunctionReport{ID: string(rune('a' + i)), Stats: Stats{Completed: 1, ColdStartRatio: ratio}})
	}
	r.Functions = append(r.Functions, FunctionReport{ID: "idle", Stats: Stats{ColdStartRatio: 1}}) // no invocation: left out
	p := Pareto("fixed", "10 min", r)
	assert.Equal(t, 0.5, p.ColdStartP75, "the 6th of 8 sorted ratios")
	assert.Equal(t, 0.25, p.ColdStartRatio)
	assert.Equal(t, 42.0, p.IdleGBSeconds)
	assert.Empty(t, p.Decided)

	r.Limits.Shedder.Requests, r.Total.Invocations = 50, 100
	assert.Equal(t, []string{"Shedder"}, Pareto("fixed", "10 min", r).Decided)
}

func TestWritePareto(t *testing.T) {
	run := func(keepAlive time.Duration) *Report {
		r, err := Run(Config{Seed: 1, Until: time.Hour, Scaler: KeepAliveFor, Default: FunctionSpec{KeepAlive: keepAlive}},
			sparse(10, 7*time.Minute, time.Hour))
		require.NoError(t, err)
		return r
	}
	var pts []ParetoPoint
	var ref float64
	for _, ka := range []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute} {
		p := Pareto("fixed keep-alive", ka.String(), run(ka))
		pts = append(pts, p)
		if ka == 10*time.Minute {
			ref = p.IdleGBSeconds
		}
	}
	assert.Greater(t, pts[0].ColdStartRatio, pts[2].ColdStartRatio, "a shorter keep-alive, more cold starts")
	assert.Less(t, pts[0].IdleGBSeconds, pts[2].IdleGBSeconds, "and less idle memory")
	pts[1].Decided = []string{"MaxQueue"}
	var svg bytes.Buffer
	require.NoError(t, WritePareto(&svg, "keep-alive", []ParetoPanel{{Title: "sparse", Points: pts, Reference: ref}}))
	wellFormedSVG(t, svg.Bytes())
	out := svg.String()
	assert.Contains(t, out, "fixed keep-alive (1 decided by limits)")
	assert.Contains(t, out, "% of the 10-minute fixed keep-alive")
	assert.Equal(t, 3, strings.Count(out, "<circle"), "a marker per point")
}
