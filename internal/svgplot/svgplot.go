// Package svgplot draws simple line and step charts as standalone SVG with
// the standard library only. The simulator's timelines and the benchmark
// suite's plots use it; it is internal because its API exists for those two
// callers, not as a general plotting library.
//
// A [Chart] has one or more panels stacked vertically that share the x axis;
// each panel has its own y axis and any number of series. Axes get "nice"
// tick values (1, 2, 2.5, 5 × 10^k) and an optional logarithmic x scale, which
// is what load sweeps (0.5× to 10×) need. Output is deterministic: the same
// chart renders to the same bytes, so tests can compare files.
package svgplot

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Series is one line in a panel.
type Series struct {
	Name string
	X, Y []float64
	// Step draws a step function (value held until the next point), the
	// right shape for counts such as instances over time.
	Step bool
	// Dashed draws the line dashed.
	Dashed bool
	// Markers draws a dot at every point.
	Markers bool
}

// Panel is one plot area with its own y axis.
type Panel struct {
	YLabel string
	Series []Series
	// YMin and YMax fix the y range; when both are zero the range is
	// computed from the data (starting at 0 for non-negative data).
	YMin, YMax float64
	// LogY uses a base-10 logarithmic y axis (data must be > 0).
	LogY bool
}

// Chart is a set of panels sharing an x axis.
type Chart struct {
	Title  string
	XLabel string
	// LogX uses a base-10 logarithmic x axis (data must be > 0).
	LogX   bool
	Panels []Panel
	// Width and height of the whole image in pixels; zero means 800 wide
	// and 220 per panel.
	Width, PanelHeight int
}

// palette is colour-blind friendly (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

const (
	marginLeft   = 70
	marginRight  = 160
	marginTop    = 40
	marginBottom = 45
	panelGap     = 30
)

// Render writes the chart as an SVG document.
func (c *Chart) Render(w io.Writer) error {
	bw := bufio.NewWriter(w)
	width := c.Width
	if width <= 0 {
		width = 800
	}
	ph := c.PanelHeight
	if ph <= 0 {
		ph = 220
	}
	n := max(len(c.Panels), 1)
	height := marginTop + n*ph + (n-1)*panelGap + marginBottom
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	if c.Title != "" {
		fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.Title))
	}
	xmin, xmax := c.xRange()
	xs := newScale(xmin, xmax, c.LogX)
	plotW := float64(width - marginLeft - marginRight)
	for i, p := range c.Panels {
		top := float64(marginTop + i*(ph+panelGap))
		c.renderPanel(bw, p, xs, top, float64(ph), plotW, i == len(c.Panels)-1)
	}
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func (c *Chart) xRange() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range c.Panels {
		for _, s := range p.Series {
			for _, x := range s.X {
				if c.LogX && x <= 0 {
					continue
				}
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
		}
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	return lo, hi
}

func (c *Chart) renderPanel(w *bufio.Writer, p Panel, xs scale, top, h, plotW float64, last bool) {
	lo, hi := p.YMin, p.YMax
	if lo == 0 && hi == 0 {
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, s := range p.Series {
			for _, y := range s.Y {
				if math.IsNaN(y) || math.IsInf(y, 0) || (p.LogY && y <= 0) {
					continue
				}
				lo, hi = math.Min(lo, y), math.Max(hi, y)
			}
		}
		if math.IsInf(lo, 0) {
			lo, hi = 0, 1
		}
		if !p.LogY && lo >= 0 {
			lo = 0
		}
	}
	ys := newScale(lo, hi, p.LogY)
	left := float64(marginLeft)
	px := func(x float64) float64 { return left + xs.frac(x)*plotW }
	py := func(y float64) float64 { return top + h - ys.frac(y)*h }

	fmt.Fprintf(w, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#999"/>`+"\n", f(left), f(top), f(plotW), f(h))
	for _, t := range ys.ticks() {
		y := py(t)
		fmt.Fprintf(w, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e5e5e5"/>`, f(left), f(y), f(left+plotW), f(y))
		fmt.Fprintf(w, `<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", f(left-6), f(y+4), esc(label(t)))
	}
	for _, t := range xs.ticks() {
		x := px(t)
		fmt.Fprintf(w, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e5e5e5"/>`, f(x), f(top), f(x), f(top+h))
		if last {
			fmt.Fprintf(w, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f(x), f(top+h+16), esc(label(t)))
		}
	}
	if p.YLabel != "" {
		fmt.Fprintf(w, `<text transform="translate(16 %s) rotate(-90)" text-anchor="middle">%s</text>`+"\n", f(top+h/2), esc(p.YLabel))
	}
	for si, s := range p.Series {
		color := palette[si%len(palette)]
		var b strings.Builder
		prevY := math.NaN()
		for i := range min(len(s.X), len(s.Y)) {
			x, y := s.X[i], s.Y[i]
			if math.IsNaN(y) || math.IsInf(y, 0) || (xs.log && x <= 0) || (ys.log && y <= 0) {
				continue
			}
			cmd := "L"
			if b.Len() == 0 {
				cmd = "M"
			} else if s.Step {
				fmt.Fprintf(&b, "L%s,%s", f(px(x)), f(py(prevY)))
			}
			fmt.Fprintf(&b, "%s%s,%s", cmd, f(px(x)), f(py(y)))
			prevY = y
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		if b.Len() > 0 {
			fmt.Fprintf(w, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`+"\n", b.String(), color, dash)
		}
		if s.Markers {
			for i := range min(len(s.X), len(s.Y)) {
				if math.IsNaN(s.Y[i]) || (xs.log && s.X[i] <= 0) || (ys.log && s.Y[i] <= 0) {
					continue
				}
				fmt.Fprintf(w, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, f(px(s.X[i])), f(py(s.Y[i])), color)
			}
			fmt.Fprintln(w)
		}
		ly := top + 14 + float64(si)*16
		lx := left + plotW + 12
		fmt.Fprintf(w, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>`, f(lx), f(ly-4), f(lx+18), f(ly-4), color, dash)
		fmt.Fprintf(w, `<text x="%s" y="%s">%s</text>`+"\n", f(lx+24), f(ly), esc(s.Name))
	}
	if last && c.XLabel != "" {
		fmt.Fprintf(w, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f(left+plotW/2), f(top+h+36), esc(c.XLabel))
	}
}

// scale maps data values to [0,1] along an axis.
type scale struct {
	lo, hi float64
	log    bool
}

func newScale(lo, hi float64, log bool) scale {
	if log {
		lo, hi = math.Log10(lo), math.Log10(hi)
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi == lo {
			hi = lo + 1
		}
		return scale{lo: lo, hi: hi, log: true}
	}
	if hi == lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	return scale{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step}
}

func (s scale) frac(v float64) float64 {
	if s.log {
		v = math.Log10(v)
	}
	return (v - s.lo) / (s.hi - s.lo)
}

func (s scale) ticks() []float64 {
	var out []float64
	if s.log {
		for e := s.lo; e <= s.hi+1e-9; e++ {
			out = append(out, math.Pow(10, e))
		}
		return out
	}
	step := niceStep((s.hi - s.lo) / 5)
	for v := s.lo; v <= s.hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// niceStep rounds raw up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func label(v float64) string {
	av := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case av >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case av >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return html.EscapeString(s) }
