package svgplot

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample() *Chart {
	return &Chart{
		Title:  "goodput <vs> offered load",
		XLabel: "offered load (× capacity)",
		LogX:   true,
		Panels: []Panel{
			{YLabel: "goodput", Series: []Series{
				{Name: "shedding on", X: []float64{0.5, 1, 2, 5, 10}, Y: []float64{0.5, 1, 0.97, 0.95, 0.93}, Markers: true},
				{Name: "shedding off", X: []float64{0.5, 1, 2, 5, 10}, Y: []float64{0.5, 1, 0.4, 0.1, 0.02}, Dashed: true},
			}},
			{YLabel: "instances", Series: []Series{
				{Name: "fn-a", X: []float64{0, 1, 2, 3}, Y: []float64{0, 2, 2, 1}, Step: true},
				{Name: "gap", X: []float64{0, 1}, Y: []float64{math.NaN(), 1}},
			}},
		},
	}
}

func TestRenderIsWellFormedXML(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sample().Render(&buf))
	dec := xml.NewDecoder(&buf)
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
}

func TestRenderContentAndEscaping(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sample().Render(&buf))
	s := buf.String()
	assert.Contains(t, s, "goodput &lt;vs&gt; offered load")
	assert.Contains(t, s, "shedding on")
	assert.Contains(t, s, `stroke-dasharray="6 4"`)
	assert.Equal(t, 5, strings.Count(s, "<circle"), "one marker per point of the marked series")
	assert.Equal(t, 4, strings.Count(s, "<path"), "one path per series with a drawable point")
}

func TestRenderIsDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	require.NoError(t, sample().Render(&a))
	require.NoError(t, sample().Render(&b))
	assert.Equal(t, a.Bytes(), b.Bytes())
}

func TestEmptyChart(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, (&Chart{}).Render(&buf))
	assert.Contains(t, buf.String(), "</svg>")
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ raw, want float64 }{
		{0.7, 1}, {1.3, 2}, {2.2, 2.5}, {3, 5}, {7, 10}, {130, 200}, {0, 1}, {math.NaN(), 1},
	} {
		assert.InDelta(t, tt.want, niceStep(tt.raw), 1e-12, "raw %v", tt.raw)
	}
}

func TestLabel(t *testing.T) {
	assert.Equal(t, "0", label(0))
	assert.Equal(t, "2.5", label(2.5))
	assert.Equal(t, "12k", label(12000))
	assert.Equal(t, "3M", label(3e6))
}

func ExampleChart_Render() {
	c := &Chart{
		Title:  "instances",
		XLabel: "time (s)",
		Panels: []Panel{{YLabel: "count", Series: []Series{{Name: "hello", X: []float64{0, 10, 20}, Y: []float64{0, 3, 1}, Step: true}}}},
	}
	var buf bytes.Buffer
	if err := c.Render(&buf); err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(buf.String(), "<svg"))
	// Output: true
}
