package analysis

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/ctxdep/ctxdep/internal/midcoder"
)

// Report plots, drawn with gonum/plot as 16 cm × 10 cm PNGs with titled,
// labelled axes.

var (
	colBar   = color.RGBA{70, 120, 190, 255}
	colPt    = color.NRGBA{70, 120, 190, 170}
	colLine2 = color.RGBA{210, 100, 40, 255}
)

func encodePNG(p *plot.Plot) []byte {
	w, err := p.WriterTo(16*vg.Centimeter, 10*vg.Centimeter, "png")
	if err != nil {
		panic(fmt.Sprintf("analysis: png writer: %v", err)) // only for an unknown format
	}
	var b bytes.Buffer
	w.WriteTo(&b)
	return b.Bytes()
}

// histogram plots v in bins equal bins over [lo, hi] and returns the PNG
// and the tallest bin's count for the caption.
func histogram(v []float64, lo, hi float64, bins int, title, xlabel string) ([]byte, string) {
	counts := make([]int, bins)
	for _, x := range v {
		i := int((x - lo) / (hi - lo) * float64(bins))
		counts[min(max(i, 0), bins-1)]++
	}
	xys := make(plotter.XYs, bins)
	for i, n := range counts {
		xys[i].X, xys[i].Y = lo+(float64(i)+0.5)*(hi-lo)/float64(bins), float64(n)
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xlabel, "features"
	h, err := plotter.NewHistogram(xys, bins)
	if err == nil {
		h.FillColor = colBar
		h.LineStyle.Width = 0
		p.Add(h)
	}
	p.X.Min, p.X.Max = lo, hi
	p.Add(plotter.NewGrid())
	return encodePNG(p), fmt.Sprint(slices.Max(counts))
}

func scatter(xs, ys []float64, xlo, xhi, ylo, yhi float64, title, xlabel, ylabel string) []byte {
	xys := make(plotter.XYs, len(xs))
	for i := range xs {
		xys[i].X, xys[i].Y = xs[i], ys[i]
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xlabel, ylabel
	if sc, err := plotter.NewScatter(xys); err == nil {
		sc.GlyphStyle.Color = colPt
		sc.GlyphStyle.Radius = vg.Points(1.5)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(sc)
	}
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = xlo, xhi, ylo, yhi
	p.Add(plotter.NewGrid())
	return encodePNG(p)
}

// lossCurves plots loss and loss_norm against epoch on two panels side by
// side, each with its own y axis (their scales differ), and a legend in a
// strip above the panels, outside the curves.
func lossCurves(h []midcoder.Record) ([]byte, string) {
	loss := make(plotter.XYs, len(h))
	norm := make(plotter.XYs, len(h))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, r := range h {
		loss[i].X, loss[i].Y = float64(r.Epoch), r.Loss
		norm[i].X, norm[i].Y = float64(r.Epoch), r.LossNorm
		lo, hi = min(lo, r.Loss, r.LossNorm), max(hi, r.Loss, r.LossNorm)
	}
	curves := []struct {
		name string
		xys  plotter.XYs
		col  color.RGBA
	}{{"loss", loss, colBar}, {"loss_norm", norm, colLine2}}
	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	var panels [][]*plot.Plot
	row := []*plot.Plot{}
	for _, c := range curves {
		p := plot.New()
		p.Title.Text, p.X.Label.Text, p.Y.Label.Text = c.name, "epoch", c.name+" (per-epoch mean)"
		if l, pts, err := plotter.NewLinePoints(c.xys); err == nil {
			l.Color, pts.Color = c.col, c.col
			p.Add(l, pts)
			leg.Add(c.name, l, pts)
		}
		p.Add(plotter.NewGrid())
		p.Y.Tick.Marker = fineTicks{}
		row = append(row, p)
	}
	panels = append(panels, row)
	const w, ht = 16 * vg.Centimeter, 10 * vg.Centimeter
	img := vgimg.New(w, ht)
	dc := draw.New(img)
	// The legend's strip at the top; the panels below it.
	strip := vg.Length(0.8) * vg.Centimeter
	leg.Draw(draw.Crop(dc, 0.5*vg.Centimeter, 0, ht-strip, 0))
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: 0, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: vg.Millimeter}
	canvases := plot.Align(panels, tiles, draw.Crop(dc, 0, 0, 0, -strip))
	for j, p := range row {
		p.Draw(canvases[0][j])
	}
	var b bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&b); err != nil {
		panic(fmt.Sprintf("analysis: png writer: %v", err))
	}
	return b.Bytes(), fmt.Sprintf("loss (blue, left) and loss_norm (orange, right) per epoch, each on its own axis; values from %.4g to %.4g", lo, hi)
}

// fineTicks are gonum's default ticks, labelled with as many decimals as
// their spacing needs (the default labels of a narrow range repeat, e.g.
// 2.2, 2.2, 2.2).
type fineTicks struct{}

func (fineTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	var major []float64
	for _, t := range ticks {
		if t.Label != "" {
			major = append(major, t.Value)
		}
	}
	if len(major) < 2 {
		return ticks
	}
	step := math.Abs(major[1] - major[0])
	d := 0
	if step > 0 {
		d = max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	}
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', d, 64)
		}
	}
	return ticks
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}
