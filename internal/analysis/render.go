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
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
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

type plotInfo struct {
	file, title, caption string
	png                  []byte
}

// WriteReport writes the table, summary, plots, index.md and index.html
// into dir, as a whole: into a temporary directory beside dir (.NAME.report-
// tmp-*), renamed to dir at the end. A failure (a full disk) leaves dir as
// it was, and a rerun leaves no file of the earlier report behind (a plot
// it no longer draws). An existing dir is replaced only when it is empty
// or a ctxdep report (nothing in it but the report's files); anything else
// is refused and left alone. A lock beside dir (.NAME.ctxdep.lock, see
// internal/dirlock) keeps two reports from writing dir at once.
func WriteReport(dir string, in RenderInput) (*Rendered, error) {
	res := in.Result
	if res == nil {
		return nil, errors.New("report: nothing to render")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	parent, name := filepath.Split(abs)
	if name == "" {
		return nil, fmt.Errorf("report: --out %s is not a directory that can be replaced: choose a new directory", dir)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	lock, err := dirlock.TryLock(reportLockPath(parent, name), dirlock.Options{What: "ctxdep report", Subject: dir})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer lock.Release()
	if err := replaceable(dir); err != nil {
		return nil, err
	}
	removeReportLeftovers(parent, name)
	tmp, err := os.MkdirTemp(parent, "."+name+reportTmp)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	out, err := writeReportFiles(tmp, in)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	err = os.Chmod(tmp, 0o755)
	if err == nil {
		err = swapInto(tmp, abs)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("report: %w", err)
	}
	return out, nil
}

// reportLockPath is the lock beside report directory parent/name.
func reportLockPath(parent, name string) string {
	return filepath.Join(parent, "."+name+".ctxdep.lock")
}

// CheckReportOut reports, before any work, whether WriteReport could
// write dir: nil when dir can be replaced (see WriteReport) and no other
// report is writing it. WriteReport checks again under its lock.
func CheckReportOut(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	parent, name := filepath.Split(abs)
	if name == "" {
		return fmt.Errorf("report: --out %s is not a directory that can be replaced: choose a new directory", dir)
	}
	if h, held, err := dirlock.Probe(reportLockPath(parent, name)); err == nil && held {
		return fmt.Errorf("report: %s is being written by %s; wait for it to finish, or use another --out", dir, h)
	}
	return replaceable(dir)
}

// Names of the temporary directories beside a report's: the new report
// being written, and the old one while the new takes its place.
const (
	reportTmp = ".report-tmp-"
	reportOld = ".report-old-"
)

// reportFiles are the names a report directory may hold.
var reportFiles = map[string]bool{ReportCSV: true, ReportSafetensors: true, ReportSummary: true, ReportMarkdown: true, ReportHTML: true,
	plotConsistency: true, plotScatter: true, plotCosine: true, plotLoss: true}

// replaceable returns nil when dir does not exist, is empty, or holds only
// the files of a report (or their leftover temporary files), and an error
// naming what stops it being replaced otherwise.
func replaceable(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("report: --out %s exists and is not a directory; choose another --out", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var foreign []string
	for _, e := range entries {
		n := e.Name()
		if base, ok := atomicfile.ParseTempName(n); ok {
			n = base
		}
		if !reportFiles[n] || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) > 0 {
		more := ""
		if len(foreign) > 3 {
			more = fmt.Sprintf(" and %d more", len(foreign)-3)
			foreign = foreign[:3]
		}
		return fmt.Errorf("report: --out %s holds %s%s, which a ctxdep report does not: a report replaces its directory as a whole, so choose a new or empty directory, or an earlier report's", dir, strings.Join(foreign, ", "), more)
	}
	return nil
}

// removeReportLeftovers removes the temporary directories that a killed
// report into parent/name left (under the report's lock).
func removeReportLeftovers(parent, name string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && (strings.HasPrefix(n, "."+name+reportTmp) || strings.HasPrefix(n, "."+name+reportOld)) {
			os.RemoveAll(filepath.Join(parent, n))
		}
	}
}

// swapInto puts the complete report directory tmp in place at dir: an
// existing dir is moved aside, tmp renamed onto its name, and the old one
// removed; if the second rename fails, the old one is put back.
func swapInto(tmp, dir string) error {
	parent, name := filepath.Split(dir)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		atomicfile.SyncDir(parent)
		return nil
	}
	old, err := os.MkdirTemp(parent, "."+name+reportOld)
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil { // only the name was wanted
		return err
	}
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if rerr := os.Rename(old, dir); rerr != nil {
			return fmt.Errorf("%w; the earlier report is in %s", errors.Join(err, rerr), old)
		}
		return err
	}
	atomicfile.SyncDir(parent)
	os.RemoveAll(old)
	return nil
}

// writeReportFiles writes the report's files into dir, which exists.
func writeReportFiles(dir string, in RenderInput) (*Rendered, error) {
	res := in.Result
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
	live := liveFeatures(res.Features)
	if len(live) == 0 {
		out.Omitted = append(out.Omitted, "consistency histogram and consistency–frequency scatter: no feature in the table fires on the cache")
	} else {
		cons := make([]float64, len(live))
		lf := make([]float64, len(live))
		for i, st := range live {
			cons[i], lf[i] = st.Consistency, math.Log10(st.Freq)
		}
		img, cap := histogram(cons, 0, 1, 40, "Consistency of the neuron gating", "consistency (0: context-dependent, 1: context-independent)")
		plots = append(plots, plotInfo{plotConsistency, "Histogram of consistency",
			fmt.Sprintf("%d live features, 40 bins of 0.025; the tallest holds %s.", len(live), cap), img})
		xlo, xhi := minMax(lf)
		if xhi-xlo < 1e-9 {
			xlo, xhi = xlo-0.5, xhi+0.5
		}
		pad := 0.03 * (xhi - xlo)
		xlo, xhi = xlo-pad, xhi+pad
		img2 := scatter(lf, cons, xlo, xhi, 0, 1, "Consistency against firing frequency", "log10(freq)", "consistency")
		plots = append(plots, plotInfo{plotScatter, "Consistency against log10 frequency",
			fmt.Sprintf("one point per live feature (%d).", len(live)), img2})
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
			img, cap := histogram(cos, -1, 1, 40, "Fitted mid vectors against the pinv baseline", "cos(fit, pinv)")
			plots = append(plots, plotInfo{plotCosine, "Histogram of cos(fit, pinv)",
				fmt.Sprintf("%d features, 40 bins of 0.05; the tallest holds %s.", len(cos), cap), img})
		}
	}
	if in.HistoryPath == "" {
		out.Omitted = append(out.Omitted, "loss curves: "+orDefault(in.HistoryNote, "no history.csv given or found next to the midcoder file"))
	} else if h, err := midcoder.ReadHistory(in.HistoryPath); err != nil {
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
	ex := extremes(live, extremeRows)
	if err := write(ReportMarkdown, []byte(markdown(in, plots, out.Omitted, ex))); err != nil {
		return nil, err
	}
	if err := write(ReportHTML, []byte(htmlPage(in, plots, out.Omitted, ex))); err != nil {
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

// liveFeatures returns the features of fs that fire, in table order.
func liveFeatures(fs []FeatureStat) []FeatureStat {
	var live []FeatureStat
	for _, st := range fs {
		if st.Count > 0 && !math.IsNaN(st.Consistency) {
			live = append(live, st)
		}
	}
	return live
}

// extremeTables are the pages' tables of the most context-dependent (low)
// and most context-independent (high) features.
type extremeTables struct{ low, high []FeatureStat }

// extremes returns up to n of the live features of lowest and of highest
// consistency. It sorts a copy: the plots keep live in table order.
func extremes(live []FeatureStat, n int) extremeTables {
	live = slices.Clone(live)
	slices.SortStableFunc(live, func(a, b FeatureStat) int {
		switch {
		case a.Consistency < b.Consistency:
			return -1
		case a.Consistency > b.Consistency:
			return 1
		}
		return cmp.Compare(b.Count, a.Count)
	})
	var ex extremeTables
	ex.low = live[:min(n, len(live))]
	for i := len(live) - 1; i >= 0 && len(ex.high) < n; i-- {
		ex.high = append(ex.high, live[i])
	}
	return ex
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

func markdown(in RenderInput, plots []plotInfo, omitted []string, ex extremeTables) string {
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
	for _, t := range []struct {
		title string
		rows  []FeatureStat
	}{{"Most context-dependent features (lowest consistency)", ex.low}, {"Most context-independent features (highest consistency)", ex.high}} {
		fmt.Fprintf(&b, "## %s\n\n| %s |\n|%s\n", t.title, strings.Join(featureHeader, " | "), strings.Repeat("---|", len(featureHeader)))
		for _, st := range t.rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(featureRow(st), " | "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "The full table is `%s` (and `%s`: the same columns as F32 tensors, plus count, top_neurons, drive and p_active [rows, k]); the summary is `%s`.\n", ReportCSV, ReportSafetensors, ReportSummary)
	return b.String()
}

func htmlPage(in RenderInput, plots []plotInfo, omitted []string, ex extremeTables) string {
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
	for _, t := range []struct {
		title string
		rows  []FeatureStat
	}{{"Most context-dependent features (lowest consistency)", ex.low}, {"Most context-independent features (highest consistency)", ex.high}} {
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
