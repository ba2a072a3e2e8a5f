package analysis

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/atomicdir"
	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// The cross-layer report (`ctxdep report --layers …`): one row per layer
// of a layer set, gathered by the caller from each layer's report, fit,
// pinv baseline and evaluation, rendered as a table (layers.csv), plots
// against the layer, and index.md / index.html pages. This file only
// renders: it computes nothing from caches or models except the CE gap
// recovered, which it derives from the row's CE values.

// Output files of the cross-layer report, written into the layer set's
// report directory beside the caller's per-layer directories layer-LL/.
const (
	LayerSetCSV          = "layers.csv"
	LayerSetMarkdown     = "index.md"
	LayerSetHTML         = "index.html"
	plotLayerConsistency = "layers_consistency_box.png"
	plotLayerFractions   = "layers_consistency_fractions.png"
	plotLayerCEGap       = "layers_ce_gap_recovered.png"
	plotLayerL0CE        = "layers_l0_vs_ce.png"
)

// layerSetPlotFiles are the plots WriteLayerSetReport may write; a plot of
// an earlier run that this run does not draw is removed, so that the
// directory never shows a plot the pages do not describe.
var layerSetPlotFiles = []string{plotLayerConsistency, plotLayerFractions, plotLayerCEGap, plotLayerL0CE}

// LayerRow is one layer's row of layers.csv. A float64 field that is NaN
// (NewLayerRow's start), an NTokens ≤ 0 and a nil Consistency mark a value
// whose input was not given (no evaluation, no pinv baseline, no report of
// that layer): an empty CSV cell, "—" in the pages' tables, and no point in
// the plots.
type LayerRow struct {
	// Layer is the transformer block L (0-based) whose MLP the layer's
	// transcoder replaces.
	Layer int
	// NTokens is the number of cached tokens of the layer's cache.
	NTokens int64
	// L0 is the mean number of active transcoder features per token.
	L0 float64
	// NMSETranscoder is the transcoder's reconstruction error of
	// hook_mlp_out, mse / mean(y²) (`ctxdep evaluate`).
	NMSETranscoder float64
	// CEClean, CETranscoder, CEMidcoder, CEPinv and CEZero are the mean
	// next-token cross-entropies (nats) of the model with hook_mlp_out of
	// block L as it is, replaced by the transcoder's reconstruction, by the
	// fitted midcoder's output, by the pinv baseline's output, and by zeros
	// (`ctxdep evaluate`).
	CEClean, CETranscoder, CEMidcoder, CEPinv, CEZero float64
	// FitLossNorm and PinvLossNorm are the fitted midcoder's and the pinv
	// baseline's loss_norm on the cache: mean((out − y)²) / mean(y²).
	FitLossNorm, PinvLossNorm float64
	// ConsistencyMedian is the median consistency of the live features of
	// the layer's report table; FracConsistencyGT09 and FracConsistencyLT05
	// are the fractions of them with consistency > 0.9 and < 0.5.
	ConsistencyMedian, FracConsistencyGT09, FracConsistencyLT05 float64
	// CosFitPinvMedian is the median cosine between fitted and pinv mid
	// vectors over the table's features where both are non-zero.
	CosFitPinvMedian float64
	// Consistency holds the consistency of each live feature of the
	// layer's report table (NaN values are skipped), for the per-layer
	// distribution plot; nil when the layer has no report.
	Consistency []float64
	// ReportDir is the relative link from the cross-layer report to the
	// layer's own report (e.g. "layer-08/index.html"); "" when there is
	// none.
	ReportDir string
}

// NewLayerRow returns layer's row with every value missing (NaN, NTokens
// 0): the caller fills in what it has.
func NewLayerRow(layer int) LayerRow {
	n := math.NaN()
	return LayerRow{Layer: layer, L0: n, NMSETranscoder: n,
		CEClean: n, CETranscoder: n, CEMidcoder: n, CEPinv: n, CEZero: n,
		FitLossNorm: n, PinvLossNorm: n,
		ConsistencyMedian: n, FracConsistencyGT09: n, FracConsistencyLT05: n, CosFitPinvMedian: n}
}

// LayerSetInfo is what the cross-layer report's pages say about how it was
// made.
type LayerSetInfo struct {
	Version  string // ctxdep's version ("" leaves it out)
	CacheDir string // the layer-set cache directory ("" leaves it out)
	// Provenance maps each input (e.g. "transcoders", "midcoders") to
	// where it came from (e.g. "PATH (sha256 …)"); shown sorted by input.
	Provenance map[string]string
	Notes      []string // free lines shown under "Notes"
}

// CEGapRecovered returns the fraction of the cross-entropy gap that a
// reconstruction recovers: (ceZero − ceX) / (ceZero − ceClean). It is 1
// when splicing the reconstruction in is as good as the clean model, 0 when
// it is as bad as zero-ablating the MLP's output, below 0 when it is worse
// than that, and NaN when any input is NaN or ceZero = ceClean (no gap to
// recover).
func CEGapRecovered(ceClean, ceX, ceZero float64) float64 {
	gap := ceZero - ceClean
	if gap == 0 || math.IsNaN(gap) || math.IsNaN(ceX) {
		return math.NaN()
	}
	return (ceZero - ceX) / gap
}

// ceGapDefinition is the pages' statement of CEGapRecovered.
const ceGapDefinition = "CE gap recovered = (ce_zero − ce_X) / (ce_zero − ce_clean), for X = transcoder, midcoder or pinv: the fraction of the cross-entropy lost by zero-ablating block L's MLP output that splicing X's reconstruction in wins back. 1 is as good as the clean model, 0 as bad as zero ablation, below 0 worse than it; empty where a CE value is missing or ce_zero = ce_clean."

// layerCol is one column of layers.csv and of the pages' tables.
type layerCol struct {
	name    string
	def     string                  // what the column means, in plain words
	get     func(*LayerRow) float64 // NaN: missing
	integer bool                    // written without a fraction
	page    string                  // fmt verb of the pages' tables
	fidel   bool                    // in the pages' fidelity table (else the context table)
}

func nanIfNonPositive(n int64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return float64(n)
}

// layerCols are layers.csv's columns, in order.
var layerCols = []layerCol{
	{"layer", "the transformer block L (0-based) whose MLP the layer's transcoder replaces; it reads blocks.L.ln2.hook_normalized and writes blocks.L.hook_mlp_out.",
		func(r *LayerRow) float64 { return float64(r.Layer) }, true, "%.0f", true},
	{"n_tokens", "the number of cached tokens of the layer's cache (every statistic of the row is over them).",
		func(r *LayerRow) float64 { return nanIfNonPositive(r.NTokens) }, true, "%.0f", true},
	{"l0", "the mean number of transcoder features active (activation > 0) per cached token.",
		func(r *LayerRow) float64 { return r.L0 }, false, "%.4g", true},
	{"nmse_transcoder", "the transcoder's reconstruction error of the MLP output: mean((ŷ − y)²) / mean(y²), y = blocks.L.hook_mlp_out; 0 is perfect, 1 is as bad as predicting zeros.",
		func(r *LayerRow) float64 { return r.NMSETranscoder }, false, "%.4g", true},
	{"ce_clean", "the model's mean next-token cross-entropy (nats) on the cached sequences, unchanged.",
		func(r *LayerRow) float64 { return r.CEClean }, false, "%.4f", true},
	{"ce_transcoder", "the cross-entropy with block L's MLP output replaced by the transcoder's reconstruction (the spliced CE).",
		func(r *LayerRow) float64 { return r.CETranscoder }, false, "%.4f", true},
	{"ce_midcoder", "the cross-entropy with block L's MLP output replaced by the MLP applied to the fitted midcoder's mid vectors.",
		func(r *LayerRow) float64 { return r.CEMidcoder }, false, "%.4f", true},
	{"ce_pinv", "the cross-entropy with block L's MLP output replaced by the MLP applied to the pinv baseline's mid vectors.",
		func(r *LayerRow) float64 { return r.CEPinv }, false, "%.4f", true},
	{"ce_zero", "the cross-entropy with block L's MLP output replaced by zeros (zero ablation).",
		func(r *LayerRow) float64 { return r.CEZero }, false, "%.4f", true},
	{"fit_loss_norm", "the fitted midcoder's error on the cache: mean((out − y)²) / mean(y²), out = the MLP applied to its mid vectors.",
		func(r *LayerRow) float64 { return r.FitLossNorm }, false, "%.4g", false},
	{"pinv_loss_norm", "the same error for the pinv baseline's mid vectors, W_dec @ pinv(W_in @ W_out): what the transcoder alone implies if the MLP were linear.",
		func(r *LayerRow) float64 { return r.PinvLossNorm }, false, "%.4g", false},
	{"consistency_median", "the median consistency over the live features of the layer's report table that the fit trained (consistency: 1 when a feature switches its top neurons the same way every time it fires, context-independent; 0 when they are on half the time, context-dependent).",
		func(r *LayerRow) float64 { return r.ConsistencyMedian }, false, "%.4f", false},
	{"frac_consistency_gt_0.9", "the fraction of those live features with consistency > 0.9 (nearly context-independent).",
		func(r *LayerRow) float64 { return r.FracConsistencyGT09 }, false, "%.4f", false},
	{"frac_consistency_lt_0.5", "the fraction of those live features with consistency < 0.5 (strongly context-dependent).",
		func(r *LayerRow) float64 { return r.FracConsistencyLT05 }, false, "%.4f", false},
	{"cos_fit_pinv_median", "the median cosine between a feature's fitted mid vector and its pinv-baseline vector, over the table's live features that the fit trained and where both are non-zero: near 1, fitting found what the linear view predicts.",
		func(r *LayerRow) float64 { return r.CosFitPinvMedian }, false, "%.4f", false},
	{"ce_gap_recovered_transcoder", "the CE gap recovered (below) by the transcoder.",
		func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CETranscoder, r.CEZero) }, false, "%.4f", true},
	{"ce_gap_recovered_midcoder", "the CE gap recovered by the fitted midcoder.",
		func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CEMidcoder, r.CEZero) }, false, "%.4f", true},
	{"ce_gap_recovered_pinv", "the CE gap recovered by the pinv baseline.",
		func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CEPinv, r.CEZero) }, false, "%.4f", true},
}

// LayerSetColumns returns layers.csv's header, in order.
func LayerSetColumns() []string {
	h := make([]string, len(layerCols))
	for i, c := range layerCols {
		h[i] = c.name
	}
	return h
}

// LayerSetDefinitions returns the definition of each column of layers.csv
// and of the CE gap recovered, as the pages show them.
func LayerSetDefinitions() []struct{ Name, Text string } {
	d := make([]struct{ Name, Text string }, 0, len(layerCols)+1)
	for _, c := range layerCols {
		d = append(d, struct{ Name, Text string }{c.name, c.def})
	}
	return append(d, struct{ Name, Text string }{"CE gap recovered", ceGapDefinition})
}

// csvCell formats v as layers.csv does: empty for NaN, otherwise as the
// per-layer features.csv does (strconv 'g', shortest representation that
// reads back to the same float64), integers without a fraction.
func csvCell(v float64, integer bool) string {
	switch {
	case math.IsNaN(v):
		return ""
	case integer:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return fmtF(v)
}

// pageCell formats v for the pages' tables: "—" for NaN.
func pageCell(v float64, verb string) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf(verb, v)
}

// layerSetCSV renders rows (sorted by layer) as layers.csv.
func layerSetCSV(rows []LayerRow) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(LayerSetColumns())
	for i := range rows {
		rec := make([]string, len(layerCols))
		for j, c := range layerCols {
			rec[j] = csvCell(c.get(&rows[i]), c.integer)
		}
		w.Write(rec)
	}
	w.Flush()
	return b.Bytes()
}

// layerSetDir is report --layers' --out for layers: the per-layer reports
// layer-LL/ and the cross-layer files, replaced as a whole
// (internal/atomicdir), so that a run that fails at its last layer leaves
// the earlier set as it was rather than a mix of two runs' layers.
func layerSetDir(layers []int) atomicdir.Spec {
	return atomicdir.Spec{What: "report", Replaceable: func(dir string) error { return replaceableSet(dir, layers) }}
}

// layerReportName matches a layer's report directory in a set;
// layerReportLeftover what a one-layer report of it leaves beside it while
// it runs (its lock, its temporary directory) and, killed, after: its
// temporary directory and the earlier report it had moved aside
// (internal/atomicdir's names).
var (
	layerReportName     = regexp.MustCompile(`^layer-([0-9]{2,})$`)
	layerReportLeftover = regexp.MustCompile(`^\.layer-([0-9]{2,})\.(report-(tmp|old)-[0-9a-f]+|ctxdep\.lock)$`)
)

// replaceableSet returns nil when the directory dir is empty or holds only
// a report set's files: its own (or their leftover temporary files) and
// the layer-LL/ report directories of layers, and an error naming what
// stops it being replaced otherwise. Another layer's report would be lost
// with the set, so it stops it too.
func replaceableSet(dir string, layers []int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	own := append([]string{LayerSetCSV, LayerSetMarkdown, LayerSetHTML}, layerSetPlotFiles...)
	var others []int
	for _, e := range entries {
		n := e.Name()
		if base, ok := atomicfile.ParseTempName(n); ok {
			n = base
		}
		m := layerReportName.FindStringSubmatch(n)
		left := layerReportLeftover.FindStringSubmatch(n)
		if e.IsDir() && left != nil && left[3] == "old" {
			if _, err := os.Lstat(filepath.Join(dir, "layer-"+left[1])); errors.Is(err, os.ErrNotExist) {
				// The only copy of layer-LL's report, which a killed
				// one-layer report had moved aside (the next one puts it
				// back): the set would drop it, so it counts as layer-LL.
				m = []string{n, left[1]}
			}
		}
		switch {
		case strings.HasSuffix(n, dirlock.Name) && left != nil:
			// A one-layer report's lock: refused while that report runs.
			if h, held, err := dirlock.Probe(filepath.Join(dir, n)); err == nil && held {
				return fmt.Errorf("report: --out %s: its %s is being written by %s; wait for it to finish, or use another --out", dir, strings.TrimSuffix(n[1:], dirlock.Name), h)
			}
		case e.Type().IsRegular() && slices.Contains(own, n), left != nil && m == nil:
		case e.IsDir() && m != nil:
			if err := replaceable(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("report: --out %s: its %s is not a report of the set (%w)", dir, n, err)
			}
			if l, _ := strconv.Atoi(m[1]); !slices.Contains(layers, l) {
				others = append(others, l)
			}
		default:
			return fmt.Errorf("report: --out %s holds %s, which a ctxdep report --layers does not: the set is replaced as a whole, so choose a new or empty directory, or an earlier report --layers'", dir, e.Name())
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("report: --out %s holds the reports of layers %s, which this run (layers %s) would not write again: the set is replaced as a whole, so report those layers too, or choose another --out", dir, actcache.LayersText(others), actcache.LayersText(layers))
	}
	return nil
}

// CheckLayerSetOut reports, before any work, whether WriteLayerSet could
// write the report of layers into dir (as CheckReportOut for a set).
func CheckLayerSetOut(dir string, layers []int) error {
	if err := checkOutside(dir); err != nil {
		return err
	}
	return layerSetDir(layers).Check(dir)
}

// WriteLayerSet writes the report of layers into dir as a whole: fill
// writes each layer's report (WriteReportFiles into stage/layer-LL) and
// the cross-layer files (WriteLayerSetReport) into stage, a new directory
// beside dir that takes dir's place once fill returns nil. A failure
// leaves dir as it was.
func WriteLayerSet(dir string, layers []int, fill func(stage string) error) error {
	return layerSetDir(layers).Write(dir, fill)
}

// WriteLayerSetReport writes the cross-layer report of rows into dir:
// layers.csv (one row per layer, sorted by layer), the plots against the
// layer that have data (PNG), index.md and a self-contained index.html
// (the plots embedded as data URIs). dir must exist; it is the caller's,
// and holds the per-layer reports layer-LL/ that the rows link to:
// WriteLayerSetReport only writes its own files (each atomically: a
// failure leaves the earlier version of that file) and removes only a plot
// file of its own names that an earlier run drew and this one does not;
// nothing else in dir is touched. The index pages are written last, so
// they never name a plot that is not there. Rows must have distinct,
// non-negative layers. It returns the names written (inside dir) and the
// plots left out, each with its reason.
func WriteLayerSetReport(dir string, rows []LayerRow, info LayerSetInfo) (*Rendered, error) {
	if len(rows) == 0 {
		return nil, errors.New("layer-set report: no layers to render")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("layer-set report: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("layer-set report: %s is not a directory", dir)
	}
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b LayerRow) int { return cmp.Compare(a.Layer, b.Layer) })
	for i, r := range rows {
		if r.Layer < 0 {
			return nil, fmt.Errorf("layer-set report: layer %d is negative", r.Layer)
		}
		if i > 0 && rows[i-1].Layer == r.Layer {
			return nil, fmt.Errorf("layer-set report: layer %d has two rows", r.Layer)
		}
	}

	out := &Rendered{}
	write := func(name string, data []byte) error {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("layer-set report: %w", err)
		}
		out.Files = append(out.Files, name)
		return nil
	}
	if err := write(LayerSetCSV, layerSetCSV(rows)); err != nil {
		return nil, err
	}
	plots, omitted := layerSetPlots(rows)
	out.Omitted = omitted
	for _, p := range plots {
		if err := write(p.file, p.png); err != nil {
			return nil, err
		}
	}
	for _, name := range layerSetPlotFiles {
		if slices.ContainsFunc(plots, func(p plotInfo) bool { return p.file == name }) {
			continue
		}
		path := filepath.Join(dir, name)
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("layer-set report: the earlier run's plot: %w", err)
			}
		}
	}
	if err := write(LayerSetMarkdown, []byte(layerSetMarkdown(rows, plots, omitted, info))); err != nil {
		return nil, err
	}
	page, err := layerSetHTMLPage(rows, plots, omitted, info)
	if err != nil {
		return nil, fmt.Errorf("layer-set report: %w", err)
	}
	if err := write(LayerSetHTML, page); err != nil {
		return nil, err
	}
	return out, nil
}

// --- Plots ---

// colLayerSet3 is the third series' colour (pinv), beside plots.go's blue
// and orange.
var colLayerSet3 = color.RGBA{50, 150, 80, 255}

// layerAxis sets p's x axis to the layers of rows: one tick per layer, a
// margin of pad either side.
func layerAxis(p *plot.Plot, rows []LayerRow, pad float64) {
	ticks := make(plot.ConstantTicks, len(rows))
	for i, r := range rows {
		ticks[i] = plot.Tick{Value: float64(r.Layer), Label: strconv.Itoa(r.Layer)}
	}
	p.X.Tick.Marker = ticks
	p.X.Min, p.X.Max = float64(rows[0].Layer)-pad, float64(rows[len(rows)-1].Layer)+pad
	p.X.Label.Text = "layer"
}

// finite returns the finite values of v.
func finite(v []float64) []float64 {
	var f []float64
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			f = append(f, x)
		}
	}
	return f
}

// layerSeries is one line of a per-layer line plot.
type layerSeries struct {
	name string
	get  func(*LayerRow) float64
	col  color.Color
}

// layerLines plots each series against the layer (lines through the
// layers that have a value, a point at each) with a legend; y runs over
// [ylo, yhi] widened to the data. It returns nil when no series has a
// value, and the caption's note of what is missing.
func layerLines(rows []LayerRow, series []layerSeries, title, ylabel string, ylo, yhi float64, refs []float64) ([]byte, string) {
	p := plot.New()
	p.Title.Text, p.Y.Label.Text = title, ylabel
	layerAxis(p, rows, 0.5)
	var notes []string
	drawn := 0
	for _, s := range series {
		// segs are the runs of consecutive rows with a value: a layer
		// without one breaks the line.
		var segs []plotter.XYs
		var missing []int
		gap := true
		for i := range rows {
			v := s.get(&rows[i])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				missing, gap = append(missing, rows[i].Layer), true
				continue
			}
			if gap {
				segs, gap = append(segs, nil), false
			}
			segs[len(segs)-1] = append(segs[len(segs)-1], plotter.XY{X: float64(rows[i].Layer), Y: v})
			ylo, yhi = min(ylo, v), max(yhi, v)
		}
		switch {
		case len(segs) == 0:
			notes = append(notes, s.name+": no layer has a value")
			continue
		case len(missing) > 0:
			notes = append(notes, fmt.Sprintf("%s: no value for layer %s", s.name, actcache.LayersText(missing)))
		}
		var legend bool
		for _, seg := range segs {
			l, pts, err := plotter.NewLinePoints(seg)
			if err != nil {
				continue
			}
			l.Color, pts.Color = s.col, s.col
			pts.Shape = draw.CircleGlyph{}
			p.Add(l, pts)
			if !legend {
				p.Legend.Add(s.name, l, pts)
				legend = true
			}
		}
		drawn++
	}
	if drawn == 0 {
		return nil, ""
	}
	for _, y := range refs {
		ref := plotter.XYs{{X: p.X.Min, Y: y}, {X: p.X.Max, Y: y}}
		if l, err := plotter.NewLine(ref); err == nil {
			l.Color = color.Gray{Y: 150}
			l.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
			p.Add(l)
		}
	}
	span := yhi - ylo
	if span == 0 {
		span = 1
	}
	// Room above the data for the legend (a line per series).
	p.Y.Min, p.Y.Max = ylo-0.04*span, yhi+(0.04+0.08*float64(len(series)))*span
	p.Y.Tick.Marker = fineTicks{}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return encodePNG(p), strings.Join(notes, "; ")
}

// withNote appends note to caption as a sentence, when there is one.
func withNote(caption, note string) string {
	if note == "" {
		return caption
	}
	return caption + " Missing: " + note + "."
}

// layerSetPlots draws the plots of rows (sorted by layer) that have data,
// and says why each of the others is left out.
func layerSetPlots(rows []LayerRow) (plots []plotInfo, omitted []string) {
	// (1) The consistency distribution per layer.
	var have, lack []int
	p := plot.New()
	p.Title.Text, p.Y.Label.Text = "Consistency of the live features, per layer", "consistency"
	layerAxis(p, rows, 0.7)
	for i := range rows {
		v := finite(rows[i].Consistency)
		if len(v) == 0 {
			lack = append(lack, rows[i].Layer)
			continue
		}
		b, err := plotter.NewBoxPlot(vg.Points(14), float64(rows[i].Layer), plotter.Values(v))
		if err != nil {
			lack = append(lack, rows[i].Layer)
			continue
		}
		b.FillColor = color.RGBA{200, 215, 240, 255}
		b.GlyphStyle.Color = colPt
		b.GlyphStyle.Radius = vg.Points(1)
		b.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(b)
		have = append(have, rows[i].Layer)
	}
	if len(have) == 0 {
		omitted = append(omitted, "consistency distribution per layer: no layer has per-feature consistencies (no layer's report was given, or no feature fires)")
	} else {
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		note := ""
		if len(lack) > 0 {
			note = "no per-feature consistencies for layer " + actcache.LayersText(lack)
		}
		plots = append(plots, plotInfo{plotLayerConsistency, "Consistency distribution per layer",
			withNote("One box per layer over the consistency of its live features (0: context-dependent, 1: context-independent): the box spans the quartiles, the line is the median, the whiskers reach the furthest values within 1.5 interquartile ranges, and the points beyond them are single features.", note),
			encodePNG(p)})
	}

	// (2) The fractions of nearly context-independent and strongly
	// context-dependent features.
	if img, note := layerLines(rows, []layerSeries{
		{"consistency > 0.9", func(r *LayerRow) float64 { return r.FracConsistencyGT09 }, colBar},
		{"consistency < 0.5", func(r *LayerRow) float64 { return r.FracConsistencyLT05 }, colLine2},
	}, "Fractions of the live features by consistency", "fraction of live features", 0, 1, nil); img == nil {
		omitted = append(omitted, "fractions of features by consistency per layer: no layer has frac_consistency_gt_0.9 or frac_consistency_lt_0.5 (no layer's report was given)")
	} else {
		plots = append(plots, plotInfo{plotLayerFractions, "Fractions of features with consistency > 0.9 and < 0.5",
			withNote("frac_consistency_gt_0.9 (blue: nearly context-independent) and frac_consistency_lt_0.5 (orange: strongly context-dependent) against the layer.", note), img})
	}

	// (3) CE gap recovered.
	if img, note := layerLines(rows, []layerSeries{
		{"transcoder", func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CETranscoder, r.CEZero) }, colBar},
		{"midcoder", func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CEMidcoder, r.CEZero) }, colLine2},
		{"pinv", func(r *LayerRow) float64 { return CEGapRecovered(r.CEClean, r.CEPinv, r.CEZero) }, colLayerSet3},
	}, "CE gap recovered per layer", "CE gap recovered", 0, 1, []float64{0, 1}); img == nil {
		omitted = append(omitted, "CE gap recovered per layer: no layer has ce_clean, ce_zero and one of ce_transcoder, ce_midcoder, ce_pinv (no evaluation was given)")
	} else {
		plots = append(plots, plotInfo{plotLayerCEGap, "CE gap recovered per layer",
			withNote("(ce_zero − ce_X) / (ce_zero − ce_clean) for the transcoder (blue), the fitted midcoder (orange) and the pinv baseline (green); the dashed lines are 1 (as good as the clean model) and 0 (as bad as zero ablation).", note), img})
	}

	// (4) L0 against spliced CE, one labelled point per layer.
	var xys plotter.XYs
	var labels []string
	lack = nil
	for i := range rows {
		x, y := rows[i].L0, rows[i].CETranscoder
		if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
			lack = append(lack, rows[i].Layer)
			continue
		}
		xys = append(xys, plotter.XY{X: x, Y: y})
		labels = append(labels, strconv.Itoa(rows[i].Layer))
	}
	if len(xys) == 0 {
		omitted = append(omitted, "L0 against spliced CE: no layer has both l0 and ce_transcoder")
	} else {
		plots = append(plots, plotInfo{plotLayerL0CE, "L0 against spliced CE",
			withNote("One point per layer, labelled with its layer number: x is the mean number of active transcoder features per token, y the cross-entropy with the transcoder spliced in. Lower and further left is sparser and more faithful.",
				func() string {
					if len(lack) == 0 {
						return ""
					}
					return "no l0 or ce_transcoder for layer " + actcache.LayersText(lack)
				}()),
			l0CEPlot(xys, labels)})
	}
	return plots, omitted
}

// l0CEPlot plots the points xys, each labelled.
func l0CEPlot(xys plotter.XYs, labels []string) []byte {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = "Sparsity against fidelity, per layer", "L0 (mean active features per token)", "ce_transcoder (nats)"
	if sc, err := plotter.NewScatter(xys); err == nil {
		sc.GlyphStyle.Color = colBar
		sc.GlyphStyle.Radius = vg.Points(3)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(sc)
	}
	if lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels}); err == nil {
		lb.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
		p.Add(lb)
	}
	xs, ys := make([]float64, len(xys)), make([]float64, len(xys))
	for i, q := range xys {
		xs[i], ys[i] = q.X, q.Y
	}
	for _, a := range []struct {
		v        []float64
		lo, hi   *float64
		rightPad float64
	}{{xs, &p.X.Min, &p.X.Max, 0.12}, {ys, &p.Y.Min, &p.Y.Max, 0.08}} {
		lo, hi := minMax(a.v)
		span := hi - lo
		if span < 1e-9 {
			span = max(math.Abs(lo)*0.1, 0.5)
		}
		*a.lo, *a.hi = lo-0.08*span, hi+a.rightPad*span
	}
	p.X.Tick.Marker, p.Y.Tick.Marker = fineTicks{}, fineTicks{}
	p.Add(plotter.NewGrid())
	return encodePNG(p)
}

// --- Pages ---

// pageTable is one of the pages' tables of the rows.
type pageTable struct {
	Title  string
	Header []string
	Rows   [][]pageTableCell
}

// pageTableCell is a table cell; Href links it (the layer's own report).
type pageTableCell struct{ Text, Href string }

// layerTables splits the columns into the pages' two tables (each starting
// with the layer, linked to its report): reconstruction and spliced CE,
// and the midcoder fits and context dependence.
func layerTables(rows []LayerRow) []pageTable {
	tables := []pageTable{{Title: "Reconstruction and spliced cross-entropy"}, {Title: "Midcoder fits and context dependence"}}
	for ti := range tables {
		fidel := ti == 0
		for _, c := range layerCols {
			if c.name == "layer" || c.fidel == fidel {
				tables[ti].Header = append(tables[ti].Header, c.name)
			}
		}
		for i := range rows {
			r := &rows[i]
			var cells []pageTableCell
			for _, c := range layerCols {
				switch {
				case c.name == "layer":
					cells = append(cells, pageTableCell{strconv.Itoa(r.Layer), r.ReportDir})
				case c.fidel == fidel:
					cells = append(cells, pageTableCell{Text: pageCell(c.get(r), c.page)})
				}
			}
			tables[ti].Rows = append(tables[ti].Rows, cells)
		}
	}
	return tables
}

// provenanceRows are info's Version, CacheDir and Provenance as (name,
// value) lines, inputs sorted by name.
func provenanceRows(info LayerSetInfo) [][2]string {
	var r [][2]string
	if info.Version != "" {
		r = append(r, [2]string{"ctxdep version", info.Version})
	}
	if info.CacheDir != "" {
		r = append(r, [2]string{"cache", info.CacheDir})
	}
	keys := make([]string, 0, len(info.Provenance))
	for k := range info.Provenance {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r = append(r, [2]string{k, info.Provenance[k]})
	}
	return r
}

// layerSetIntro is the pages' opening paragraph.
func layerSetIntro(rows []LayerRow) string {
	ls := make([]int, len(rows))
	for i, r := range rows {
		ls[i] = r.Layer
	}
	return fmt.Sprintf("One row per layer (%s). Each layer's own report is linked from its layer number; the table is %s, where a missing value is an empty cell (— here).", actcache.LayersText(ls), LayerSetCSV)
}

// mdEscape makes s safe in a markdown table cell or paragraph.
func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

// mdRow is one row of a markdown table, each cell escaped (a "|" in a
// cell would split it and drop the whole table from the rendering).
func mdRow(cells ...string) string {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = mdEscape(c)
	}
	return "| " + strings.Join(esc, " | ") + " |\n"
}

// mdHeader is a markdown table's header row and the separator under it.
func mdHeader(cells ...string) string {
	return mdRow(cells...) + "|" + strings.Repeat("---|", len(cells)) + "\n"
}

// mdCode writes s as inline code, with a backtick fence longer than any
// run of backticks in s.
func mdCode(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + strings.ReplaceAll(s, "\n", " ") + pad + fence
}

// mdLink links text to the relative path href.
func mdLink(text, href string) string {
	if strings.ContainsAny(href, " ()<>") {
		href = "<" + strings.NewReplacer("<", "%3C", ">", "%3E").Replace(href) + ">"
	}
	return "[" + text + "](" + href + ")"
}

func layerSetMarkdown(rows []LayerRow, plots []plotInfo, omitted []string, info LayerSetInfo) string {
	var b strings.Builder
	b.WriteString("# Context-dependence report across layers\n\n")
	b.WriteString(layerSetIntro(rows) + "\n\n")
	for _, t := range layerTables(rows) {
		fmt.Fprintf(&b, "## %s\n\n%s", t.Title, mdHeader(t.Header...))
		for _, r := range t.Rows {
			cells := make([]string, len(r))
			for i, c := range r {
				cells[i] = mdEscape(c.Text)
				if c.Href != "" {
					cells[i] = mdLink(cells[i], c.Href)
				}
			}
			// Escaped already (a link's target may not be).
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		}
		b.WriteString("\n")
	}
	b.WriteString("## Definitions\n\n")
	for _, d := range LayerSetDefinitions() {
		fmt.Fprintf(&b, "- **%s**: %s\n", d.Name, d.Text)
	}
	mdPlots(&b, plots, omitted)
	if len(info.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range info.Notes {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " "))
		}
		b.WriteString("\n")
	}
	if pr := provenanceRows(info); len(pr) > 0 {
		b.WriteString("## Provenance\n\n")
		for _, r := range pr {
			fmt.Fprintf(&b, "- %s: %s\n", r[0], mdCode(r[1]))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// layerSetPageData is what layerSetTemplate renders.
type layerSetPageData struct {
	Intro      string
	Tables     []pageTable
	Defs       []struct{ Name, Text string }
	Plots      []plotView
	Omitted    []string
	Notes      []string
	Provenance [][2]string
}

// layerSetTemplate is index.html: self-contained (inline CSS, the plots as
// data URIs), and well-formed XML as well as HTML (void elements closed
// with />), so that a strict parser reads it.
var layerSetTemplate = template.Must(template.New("layerset").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>ctxdep report across layers</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}.wide{overflow-x:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;font-size:90%}th{text-align:left}img{max-width:100%;border:1px solid #eee}dt{font-weight:bold;margin-top:.5em}footer{margin-top:2em;border-top:1px solid #ccc;font-size:90%}</style></head><body>
<h1>Context-dependence report across layers</h1>
<p>{{.Intro}}</p>
{{range .Tables}}<h2>{{.Title}}</h2>
<div class="wide"><table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{if .Href}}<a href="{{.Href}}">{{.Text}}</a>{{else}}{{.Text}}{{end}}</td>{{end}}</tr>
{{end}}</table></div>
{{end}}<h2>Definitions</h2>
<dl>
{{range .Defs}}<dt>{{.Name}}</dt><dd>{{.Text}}</dd>
{{end}}</dl>
<h2>Plots</h2>
{{range .Plots}}<h3>{{.Title}}</h3>
<img alt="{{.Title}}" src="{{.Src}}"/>
<p>{{.Caption}}</p>
{{end}}{{if .Omitted}}<h3>Omitted</h3>
<ul>
{{range .Omitted}}<li>{{.}}</li>
{{end}}</ul>
{{end}}{{if .Notes}}<h2>Notes</h2>
<ul>
{{range .Notes}}<li>{{.}}</li>
{{end}}</ul>
{{end}}{{if .Provenance}}<footer><h2>Provenance</h2>
<dl>
{{range .Provenance}}<dt>{{index . 0}}</dt><dd><code>{{index . 1}}</code></dd>
{{end}}</dl></footer>
{{end}}</body></html>
`))

func layerSetHTMLPage(rows []LayerRow, plots []plotInfo, omitted []string, info LayerSetInfo) ([]byte, error) {
	d := layerSetPageData{Intro: layerSetIntro(rows), Tables: layerTables(rows), Defs: LayerSetDefinitions(),
		Omitted: omitted, Notes: info.Notes, Provenance: provenanceRows(info)}
	d.Plots = plotViews(plots)
	var b bytes.Buffer
	if err := layerSetTemplate.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
