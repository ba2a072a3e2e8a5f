package analysis

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// Output files of the report.
const (
	ReportCSV         = "features.csv"
	ReportSafetensors = "features.safetensors"
	ReportSummary     = "summary.json"
	ReportMarkdown    = "index.md"
	ReportHTML        = "index.html"
	plotConsistency   = "consistency_hist.png"
	plotScatter       = "consistency_vs_freq.png"
	plotCosine        = "cos_fit_pinv_hist.png"
	plotLoss          = "loss_curves.png"
)

// Definitions of every statistic, as index.md and index.html show them.
var ReportDefinitions = []struct{ Name, Text string }{
	{"freq", "firing frequency: the fraction of cached tokens t on which the feature fires, acts_f(t) > 0."},
	{"drive", "W_mid[f] @ W_in, a vector over the N MLP neurons: how strongly the feature's fitted mid vector drives each neuron (W_in is the layer's TransformerLens-processed MLP input weight, C × N)."},
	{"top-k neurons", "the k neurons with the largest |drive[n]| (ties to the lower index). All gating statistics are restricted to them; no other feature–neuron pair is counted."},
	{"neuron active", "on token t, neuron n is active when the midcoder's pre-activation (mid(t) @ W_in + b_in)[n] > 0, where mid(t) = acts(t) @ W_mid + b_mid is the fitted midcoder's forward on all features active on t (not on f alone)."},
	{"P(active | f)", "P(neuron n active | f active) = (tokens where f fires and n is active) / (tokens where f fires), for each of f's top-k neurons."},
	{"consistency", "the mean over f's top-k neurons of |2·P(active | f) − 1|. It is 1 when f switches the same neurons on (or off) every time it fires: its effect through the MLP is context-independent. It is 0 when each of those neurons is on half the time f fires: the effect depends on context. NaN for a feature that never fires."},
	{"cos_fit_pinv", "the cosine between the feature's fitted mid vector W_mid_fit[f] and its pinv-baseline vector W_mid_pinv[f] = (W_dec @ pinv(W_in @ W_out))[f]; NaN without --pinv or when either vector is zero."},
	{"norm_fit, norm_pinv", "the Euclidean norms ‖W_mid_fit[f]‖₂ and ‖W_mid_pinv[f]‖₂."},
}

// RenderInput is what WriteReport writes.
type RenderInput struct {
	Result       *ReportResult
	CacheDir     string
	MidcoderFile string
	PinvFile     string // "" without --pinv
	// HistoryPath is the history.csv to plot ("" when none was given or
	// found); HistoryNote says where it came from or why there is none.
	HistoryPath string
	HistoryNote string
}

// Rendered lists what WriteReport wrote and what it left out.
type Rendered struct {
	Files   []string // names inside the output directory
	Omitted []string // plots left out, each with the reason
}

// ReadHistory reads fit's history.csv (epoch,loss,loss_norm,lr). A
// missing, empty or malformed file is an error that says what is wrong.
func ReadHistory(path string) ([]midcoder.Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s is not valid CSV: %w", path, err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], []string{"epoch", "loss", "loss_norm", "lr"}) {
		return nil, fmt.Errorf("%s does not start with the header epoch,loss,loss_norm,lr", path)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s has no epochs", path)
	}
	var h []midcoder.Record
	for i, r := range rows[1:] {
		var rec midcoder.Record
		var vals [3]float64
		if rec.Epoch, err = strconv.Atoi(r[0]); err != nil {
			return nil, fmt.Errorf("%s line %d: epoch %q is not an integer", path, i+2, r[0])
		}
		for j := range vals {
			if vals[j], err = strconv.ParseFloat(r[j+1], 64); err != nil || math.IsNaN(vals[j]) || math.IsInf(vals[j], 0) {
				return nil, fmt.Errorf("%s line %d: %s %q is not a finite number", path, i+2, rows[0][j+1], r[j+1])
			}
		}
		rec.Loss, rec.LossNorm, rec.LR = vals[0], vals[1], vals[2]
		h = append(h, rec)
	}
	return h, nil
}

type plotInfo struct {
	file, title, caption string
	png                  []byte
}

// WriteReport writes the table, summary, plots, index.md and index.html
// into dir (created if needed).
func WriteReport(dir string, in RenderInput) (*Rendered, error) {
	res := in.Result
	if res == nil {
		return nil, errors.New("report: nothing to render")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	out := &Rendered{}
	write := func(name string, data []byte) error {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		out.Files = append(out.Files, name)
		return nil
	}
	if err := write(ReportCSV, featuresCSV(res)); err != nil {
		return nil, err
	}
	if err := writeFeaturesSafetensors(filepath.Join(dir, ReportSafetensors), res); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	out.Files = append(out.Files, ReportSafetensors)
	sum, err := json.MarshalIndent(res.Summary, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := write(ReportSummary, append(sum, '\n')); err != nil {
		return nil, err
	}

	// Plots.
	var plots []plotInfo
	var live []FeatureStat
	for _, st := range res.Features {
		if st.Count > 0 && !math.IsNaN(st.Consistency) {
			live = append(live, st)
		}
	}
	if len(live) == 0 {
		out.Omitted = append(out.Omitted, "consistency histogram and consistency–frequency scatter: no feature in the table fires on the cache")
	} else {
		cons := make([]float64, len(live))
		lf := make([]float64, len(live))
		for i, st := range live {
			cons[i], lf[i] = st.Consistency, math.Log10(st.Freq)
		}
		img, cap := histogram(cons, 0, 1, 40)
		plots = append(plots, plotInfo{plotConsistency, "Histogram of consistency",
			fmt.Sprintf("%d live features; x: consistency from 0 (context-dependent) to 1 (context-independent), 40 bins of 0.025; y: features per bin, 0 to %s.", len(live), cap), img})
		xlo, xhi := minMax(lf)
		if xhi-xlo < 1e-9 {
			xlo, xhi = xlo-0.5, xhi+0.5
		}
		pad := 0.03 * (xhi - xlo)
		xlo, xhi = xlo-pad, xhi+pad
		img2 := scatter(lf, cons, xlo, xhi, 0, 1)
		plots = append(plots, plotInfo{plotScatter, "Consistency against log10 frequency",
			fmt.Sprintf("one point per live feature (%d); x: log10(freq) from %.3g to %.3g; y: consistency from 0 to 1 (grid lines at 0.25, 0.5, 0.75).", len(live), xlo, xhi), img2})
	}
	if in.PinvFile == "" {
		out.Omitted = append(out.Omitted, "histogram of cos(fit, pinv): no --pinv file given")
	} else {
		var cos []float64
		for _, st := range res.Features {
			if !math.IsNaN(st.CosFitPinv) {
				cos = append(cos, st.CosFitPinv)
			}
		}
		if len(cos) == 0 {
			out.Omitted = append(out.Omitted, "histogram of cos(fit, pinv): every feature in the table has a zero fitted or pinv vector")
		} else {
			img, cap := histogram(cos, -1, 1, 40)
			plots = append(plots, plotInfo{plotCosine, "Histogram of cos(fit, pinv)",
				fmt.Sprintf("%d features; x: cosine from −1 to 1, 40 bins of 0.05 (grid lines at −0.5, 0, 0.5); y: features per bin, 0 to %s.", len(cos), cap), img})
		}
	}
	if in.HistoryPath == "" {
		out.Omitted = append(out.Omitted, "loss curves: "+orDefault(in.HistoryNote, "no history.csv given or found next to the midcoder file"))
	} else if h, err := ReadHistory(in.HistoryPath); err != nil {
		out.Omitted = append(out.Omitted, "loss curves: "+err.Error())
	} else {
		img, cap := lossCurves(h)
		plots = append(plots, plotInfo{plotLoss, "Loss curves", fmt.Sprintf("from %s (%d epochs). %s", in.HistoryPath, len(h), cap), img})
	}
	for _, p := range plots {
		if err := write(p.file, p.png); err != nil {
			return nil, err
		}
	}
	if err := write(ReportMarkdown, []byte(markdown(in, plots, out.Omitted))); err != nil {
		return nil, err
	}
	if err := write(ReportHTML, []byte(htmlPage(in, plots, out.Omitted))); err != nil {
		return nil, err
	}
	return out, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func fmtF(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func featuresCSV(res *ReportResult) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"feature", "freq", "consistency", "cos_fit_pinv", "norm_fit", "norm_pinv"})
	for _, st := range res.Features {
		w.Write([]string{strconv.Itoa(st.Feature), fmtF(st.Freq), fmtF(st.Consistency), fmtF(st.CosFitPinv), fmtF(st.NormFit), fmtF(st.NormPinv)})
	}
	w.Flush()
	return b.Bytes()
}

func writeFeaturesSafetensors(path string, res *ReportResult) error {
	s, k := len(res.Features), res.Summary.TopK
	cols := map[string][]float32{}
	names := []string{"feature", "freq", "consistency", "cos_fit_pinv", "norm_fit", "norm_pinv"}
	for _, n := range names {
		cols[n] = make([]float32, s)
	}
	count := make([]int64, s)
	neurons := make([]int32, 0, s*k)
	drive := make([]float32, 0, s*k)
	pAct := make([]float32, 0, s*k)
	for i, st := range res.Features {
		cols["feature"][i] = float32(st.Feature)
		cols["freq"][i] = float32(st.Freq)
		cols["consistency"][i] = float32(st.Consistency)
		cols["cos_fit_pinv"][i] = float32(st.CosFitPinv)
		cols["norm_fit"][i] = float32(st.NormFit)
		cols["norm_pinv"][i] = float32(st.NormPinv)
		count[i] = st.Count
		neurons = append(neurons, st.Neurons...)
		drive = append(drive, st.Drive...)
		for _, p := range st.PActive {
			pAct = append(pAct, float32(p))
		}
	}
	var infos []safetensors.TensorInfo
	for _, n := range names {
		infos = append(infos, safetensors.TensorInfo{Name: n, DType: safetensors.F32, Shape: []int{s}})
	}
	infos = append(infos,
		safetensors.TensorInfo{Name: "count", DType: safetensors.I64, Shape: []int{s}},
		safetensors.TensorInfo{Name: "top_neurons", DType: safetensors.I32, Shape: []int{s, k}},
		safetensors.TensorInfo{Name: "drive", DType: safetensors.F32, Shape: []int{s, k}},
		safetensors.TensorInfo{Name: "p_active", DType: safetensors.F32, Shape: []int{s, k}})
	sum, _ := json.Marshal(res.Summary)
	w, err := safetensors.Create(path, infos, map[string]string{"format": "ctxdep-report", "summary": string(sum)})
	if err != nil {
		return err
	}
	for _, n := range names {
		if err = w.WriteFloat32(cols[n]); err != nil {
			break
		}
	}
	if err == nil {
		err = w.WriteInt64(count)
	}
	if err == nil {
		err = w.WriteInt32(neurons)
	}
	if err == nil {
		err = w.WriteFloat32(drive)
	}
	if err == nil {
		err = w.WriteFloat32(pAct)
	}
	if err != nil {
		return errors.Join(err, w.Abort())
	}
	return w.Close()
}

// summaryRows are the summary's lines as (name, value) for the pages.
func summaryRows(s Summary) [][2]string {
	r := [][2]string{
		{"layer", strconv.Itoa(s.Layer)},
		{"d_model, d_mlp, features", fmt.Sprintf("%d, %d, %d", s.DModel, s.DMLP, s.DSAE)},
		{"cached tokens", strconv.FormatInt(s.Tokens, 10)},
		{"feature acts", s.ActsSource},
		{"features that fire (live)", fmt.Sprintf("%d of %d", s.FeaturesLive, s.FeaturesTotal)},
		{"table", s.Selection},
		{"top-k neurons per feature", strconv.Itoa(s.TopK)},
		{"freq mean / median (live)", fmt.Sprintf("%.4g / %.4g", s.FreqMean, s.FreqMedian)},
		{"consistency mean / median (live)", fmt.Sprintf("%.4f / %.4f", s.ConsistencyMean, s.ConsistencyMedian)},
		{"consistency 10th / 90th percentile", fmt.Sprintf("%.4f / %.4f", s.ConsistencyP10, s.ConsistencyP90)},
		{"fraction with consistency > 0.9 / < 0.5", fmt.Sprintf("%.4f / %.4f", s.FracConsistencyAbove09, s.FracConsistencyBelow05)},
		{"norm_fit mean", fmt.Sprintf("%.4g", s.NormFitMean)},
	}
	if s.HasPinv {
		r = append(r, [2]string{"cos(fit, pinv) mean / median", fmt.Sprintf("%.4f / %.4f", s.CosMean, s.CosMedian)},
			[2]string{"norm_pinv mean", fmt.Sprintf("%.4g", s.NormPinvMean)})
	}
	return r
}

// extremes returns up to n live features of lowest and of highest
// consistency.
func extremes(fs []FeatureStat, n int) (low, high []FeatureStat) {
	var live []FeatureStat
	for _, st := range fs {
		if st.Count > 0 && !math.IsNaN(st.Consistency) {
			live = append(live, st)
		}
	}
	slices.SortStableFunc(live, func(a, b FeatureStat) int {
		switch {
		case a.Consistency < b.Consistency:
			return -1
		case a.Consistency > b.Consistency:
			return 1
		}
		return cmp.Compare(b.Count, a.Count)
	})
	low = live[:min(n, len(live))]
	for i := len(live) - 1; i >= 0 && len(high) < n; i-- {
		high = append(high, live[i])
	}
	return low, high
}

func featureRow(st FeatureStat) []string {
	var nb []string
	for j, n := range st.Neurons {
		nb = append(nb, fmt.Sprintf("%d (%.2f)", n, st.PActive[j]))
	}
	return []string{strconv.Itoa(st.Feature), fmt.Sprintf("%.4g", st.Freq), fmt.Sprintf("%.4f", st.Consistency),
		fmt.Sprintf("%.4f", st.CosFitPinv), fmt.Sprintf("%.4g", st.NormFit), fmt.Sprintf("%.4g", st.NormPinv), strings.Join(nb, ", ")}
}

var featureHeader = []string{"feature", "freq", "consistency", "cos_fit_pinv", "norm_fit", "norm_pinv", "top neurons (P(active | f))"}

const extremeRows = 20

func markdown(in RenderInput, plots []plotInfo, omitted []string) string {
	res := in.Result
	var b strings.Builder
	fmt.Fprintf(&b, "# Context-dependence report, layer %d\n\n", res.Summary.Layer)
	fmt.Fprintf(&b, "Cache `%s`, midcoder `%s`", in.CacheDir, in.MidcoderFile)
	if in.PinvFile != "" {
		fmt.Fprintf(&b, ", pinv baseline `%s`", in.PinvFile)
	}
	b.WriteString(".\n\n")
	fmt.Fprintf(&b, "**Which features and neurons:** %s.\n\n", res.Summary.Selection)
	b.WriteString("## Summary\n\n| statistic | value |\n|---|---|\n")
	for _, r := range summaryRows(res.Summary) {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], strings.ReplaceAll(r[1], "|", "\\|"))
	}
	b.WriteString("\n## Definitions\n\n")
	for _, d := range ReportDefinitions {
		fmt.Fprintf(&b, "- **%s**: %s\n", d.Name, d.Text)
	}
	b.WriteString("\n## Plots\n\n")
	for _, p := range plots {
		fmt.Fprintf(&b, "### %s\n\n![%s](%s)\n\n%s\n\n", p.title, p.title, p.file, p.caption)
	}
	if len(omitted) > 0 {
		b.WriteString("### Omitted\n\n")
		for _, o := range omitted {
			fmt.Fprintf(&b, "- %s\n", o)
		}
		b.WriteString("\n")
	}
	low, high := extremes(res.Features, extremeRows)
	for _, t := range []struct {
		title string
		rows  []FeatureStat
	}{{"Most context-dependent features (lowest consistency)", low}, {"Most context-independent features (highest consistency)", high}} {
		fmt.Fprintf(&b, "## %s\n\n| %s |\n|%s\n", t.title, strings.Join(featureHeader, " | "), strings.Repeat("---|", len(featureHeader)))
		for _, st := range t.rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(featureRow(st), " | "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "The full table is `%s` (and `%s`: the same columns as F32 tensors, plus count, top_neurons, drive and p_active [rows, k]); the summary is `%s`.\n", ReportCSV, ReportSafetensors, ReportSummary)
	return b.String()
}

func htmlPage(in RenderInput, plots []plotInfo, omitted []string) string {
	res := in.Result
	e := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ctxdep report, layer %d</title>\n", res.Summary.Layer)
	b.WriteString("<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}img{max-width:100%;border:1px solid #eee}dt{font-weight:bold;margin-top:.5em}</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>Context-dependence report, layer %d</h1>\n<p>Cache <code>%s</code>, midcoder <code>%s</code>", res.Summary.Layer, e(in.CacheDir), e(in.MidcoderFile))
	if in.PinvFile != "" {
		fmt.Fprintf(&b, ", pinv baseline <code>%s</code>", e(in.PinvFile))
	}
	fmt.Fprintf(&b, ".</p>\n<p><b>Which features and neurons:</b> %s.</p>\n", e(res.Summary.Selection))
	b.WriteString("<h2>Summary</h2>\n<table>\n")
	for _, r := range summaryRows(res.Summary) {
		fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", e(r[0]), e(r[1]))
	}
	b.WriteString("</table>\n<h2>Definitions</h2>\n<dl>\n")
	for _, d := range ReportDefinitions {
		fmt.Fprintf(&b, "<dt>%s</dt><dd>%s</dd>\n", e(d.Name), e(d.Text))
	}
	b.WriteString("</dl>\n<h2>Plots</h2>\n")
	for _, p := range plots {
		fmt.Fprintf(&b, "<h3>%s</h3>\n<img alt=\"%s\" src=\"data:image/png;base64,%s\">\n<p>%s</p>\n", e(p.title), e(p.title), base64.StdEncoding.EncodeToString(p.png), e(p.caption))
	}
	if len(omitted) > 0 {
		b.WriteString("<h3>Omitted</h3>\n<ul>\n")
		for _, o := range omitted {
			fmt.Fprintf(&b, "<li>%s</li>\n", e(o))
		}
		b.WriteString("</ul>\n")
	}
	low, high := extremes(res.Features, extremeRows)
	for _, t := range []struct {
		title string
		rows  []FeatureStat
	}{{"Most context-dependent features (lowest consistency)", low}, {"Most context-independent features (highest consistency)", high}} {
		fmt.Fprintf(&b, "<h2>%s</h2>\n<table><tr>", e(t.title))
		for _, h := range featureHeader {
			fmt.Fprintf(&b, "<th>%s</th>", e(h))
		}
		b.WriteString("</tr>\n")
		for _, st := range t.rows {
			b.WriteString("<tr>")
			for _, c := range featureRow(st) {
				fmt.Fprintf(&b, "<td>%s</td>", e(c))
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	fmt.Fprintf(&b, "<p>The full table is <code>%s</code> (and <code>%s</code>); the summary is <code>%s</code>.</p>\n</body></html>\n", ReportCSV, ReportSafetensors, ReportSummary)
	return b.String()
}

// Plotting with the standard library: no text in the images; the captions
// give the axes' ranges.

const (
	plotW, plotH = 640, 400
	margin       = 40
)

var (
	colAxis  = color.RGBA{0, 0, 0, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colBar   = color.RGBA{70, 120, 190, 255}
	colPt    = color.RGBA{70, 120, 190, 140}
	colLine2 = color.RGBA{210, 100, 40, 255}
)

type canvas struct {
	img            *image.RGBA
	x0, y0, x1, y1 int // plot area in pixels (y0 top)
}

func newCanvas(w, h int) *canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	return &canvas{img: img, x0: margin, y0: margin / 2, x1: w - margin/2, y1: h - margin}
}

func (c *canvas) set(x, y int, col color.RGBA) {
	if !image.Pt(x, y).In(c.img.Rect) {
		return
	}
	if col.A == 255 {
		c.img.SetRGBA(x, y, col)
		return
	}
	o := c.img.RGBAAt(x, y)
	a := float64(col.A) / 255
	mix := func(s, d uint8) uint8 { return uint8(float64(s)*a + float64(d)*(1-a)) }
	c.img.SetRGBA(x, y, color.RGBA{mix(col.R, o.R), mix(col.G, o.G), mix(col.B, o.B), 255})
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			c.set(x, y, col)
		}
	}
}

func (c *canvas) line(x0, y0, x1, y1 int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	err := dx + dy
	for {
		c.set(x0, y0, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// grid draws four evenly spaced grid lines each way and the axes, with
// tick marks.
func (c *canvas) grid() {
	for i := 1; i < 4; i++ {
		x := c.x0 + i*(c.x1-c.x0)/4
		y := c.y0 + i*(c.y1-c.y0)/4
		c.line(x, c.y0, x, c.y1, colGrid)
		c.line(c.x0, y, c.x1, y, colGrid)
	}
	c.line(c.x0, c.y1, c.x1, c.y1, colAxis)
	c.line(c.x0, c.y0, c.x0, c.y1, colAxis)
	for i := 0; i <= 4; i++ {
		x := c.x0 + i*(c.x1-c.x0)/4
		y := c.y0 + i*(c.y1-c.y0)/4
		c.line(x, c.y1, x, c.y1+5, colAxis)
		c.line(c.x0-5, y, c.x0, y, colAxis)
	}
}

func (c *canvas) px(v, lo, hi float64) int {
	return c.x0 + int(math.Round((v-lo)/(hi-lo)*float64(c.x1-c.x0)))
}

func (c *canvas) py(v, lo, hi float64) int {
	return c.y1 - int(math.Round((v-lo)/(hi-lo)*float64(c.y1-c.y0)))
}

func (c *canvas) encode() []byte {
	var b bytes.Buffer
	png.Encode(&b, c.img)
	return b.Bytes()
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// histogram draws bins equal-width bins over [lo, hi] (values outside are
// clamped into the end bins) and returns the PNG and the y-axis maximum.
func histogram(v []float64, lo, hi float64, bins int) ([]byte, string) {
	counts := make([]int, bins)
	for _, x := range v {
		i := int((x - lo) / (hi - lo) * float64(bins))
		counts[min(max(i, 0), bins-1)]++
	}
	top := slices.Max(counts)
	c := newCanvas(plotW, plotH)
	c.grid()
	for i, n := range counts {
		if n == 0 {
			continue
		}
		x0 := c.px(lo+float64(i)*(hi-lo)/float64(bins), lo, hi)
		x1 := c.px(lo+float64(i+1)*(hi-lo)/float64(bins), lo, hi) - 1
		c.rect(x0+1, c.py(float64(n), 0, float64(top)), x1, c.y1-1, colBar)
	}
	c.grid()
	return c.encode(), strconv.Itoa(top)
}

func scatter(xs, ys []float64, xlo, xhi, ylo, yhi float64) []byte {
	c := newCanvas(plotW, plotH)
	c.grid()
	for i, x := range xs {
		px, py := c.px(x, xlo, xhi), c.py(ys[i], ylo, yhi)
		c.rect(px-1, py-1, px+1, py+1, colPt)
	}
	return c.encode()
}

// lossCurves draws loss (blue, top panel) and loss_norm (orange, bottom
// panel) against epoch.
func lossCurves(h []midcoder.Record) ([]byte, string) {
	full := image.NewRGBA(image.Rect(0, 0, plotW, 2*plotH))
	var caps []string
	for panel, s := range []struct {
		name string
		get  func(midcoder.Record) float64
		col  color.RGBA
	}{{"loss (blue, top)", func(r midcoder.Record) float64 { return r.Loss }, colBar},
		{"loss_norm (orange, bottom)", func(r midcoder.Record) float64 { return r.LossNorm }, colLine2}} {
		xs := make([]float64, len(h))
		ys := make([]float64, len(h))
		for i, r := range h {
			xs[i], ys[i] = float64(r.Epoch), s.get(r)
		}
		xlo, xhi := minMax(xs)
		ylo, yhi := minMax(ys)
		if xhi == xlo {
			xlo, xhi = xlo-1, xhi+1
		}
		if yhi == ylo {
			ylo, yhi = ylo-max(math.Abs(ylo)*0.1, 1e-12), yhi+max(math.Abs(yhi)*0.1, 1e-12)
		}
		c := newCanvas(plotW, plotH)
		c.grid()
		for i := range xs {
			px, py := c.px(xs[i], xlo, xhi), c.py(ys[i], ylo, yhi)
			if i > 0 {
				c.line(c.px(xs[i-1], xlo, xhi), c.py(ys[i-1], ylo, yhi), px, py, s.col)
			}
			c.rect(px-2, py-2, px+2, py+2, s.col)
		}
		for y := 0; y < plotH; y++ {
			copy(full.Pix[(panel*plotH+y)*full.Stride:(panel*plotH+y)*full.Stride+plotW*4], c.img.Pix[y*c.img.Stride:y*c.img.Stride+plotW*4])
		}
		caps = append(caps, fmt.Sprintf("%s: x epoch %g to %g, y %.4g to %.4g", s.name, xlo, xhi, ylo, yhi))
	}
	var b bytes.Buffer
	png.Encode(&b, full)
	return b.Bytes(), strings.Join(caps, "; ") + "."
}
