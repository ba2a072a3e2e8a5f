package analysis

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/atomicdir"
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
	plotEffect        = "effect_consistency_hist.png"
	plotEffectScatter = "effect_vs_gating.png"
	plotLoss          = "loss_curves.png"
)

// Definitions of every statistic, as index.md and index.html show them.
var ReportDefinitions = []struct{ Name, Text string }{
	{"count", "the number of cached tokens on which the feature fires, acts_f(t) > 0."},
	{"freq", "firing frequency: count divided by the number of cached tokens."},
	{"drive", "W_mid[f] @ W_in, a vector over the N MLP neurons: how strongly the feature's fitted mid vector drives each neuron (W_in is the layer's TransformerLens-processed MLP input weight, C × N)."},
	{"top-k neurons", "the k neurons with the largest |drive[n]| (ties to the lower index). All gating statistics are restricted to them; no other feature–neuron pair is counted."},
	{"neuron active", "on token t, neuron n is active when the midcoder's pre-activation (mid(t) @ W_in + b_in)[n] > 0, where mid(t) = acts(t) @ W_mid + b_mid is the fitted midcoder's forward on all features active on t (not on f alone)."},
	{"P(active | f)", "P(neuron n active | f active) = (tokens where f fires and n is active) / (tokens where f fires), for each of f's top-k neurons."},
	{"consistency", "the mean over f's top-k neurons of |2·P(active | f) − 1|. It is 1 when f switches the same neurons on (or off) every time it fires: its effect through the MLP is context-independent. It is 0 when each of those neurons is on half the time f fires: the effect depends on context. NaN for a feature that never fires."},
	{"consistency interval", "a 95% interval for consistency (consistency_lo, consistency_hi): each top neuron's P(active | f) gets its 95% Wilson score interval (from count firings), |2p − 1| is bounded over that interval (0 when it contains 1/2), and the bounds are averaged over the top-k neurons. It contains the consistency whenever every neuron's P lies in its own interval; it makes no correction for the neurons' dependence or for tokens of one sequence being correlated. A feature that fired once has an interval of about [0, 1], however consistent it looks."},
	{"rankings", "the most/least context-independent tables list only features with count ≥ --min-count (default 20) whose fitted vector the fit trained (fit_trained 1) and that fire at position 0 at most half the time (first_position_frac ≤ 0.5), sorted by consistency (ties: the larger count first)."},
	{"examples", "per feature that fires: the --examples contexts of largest activation (top; ties to the lower row, then position), the firings at the 10/30/50/70/90% quantiles of a uniform sample of 20 firings (quantile; reservoir sampling with a deterministic hash, exact while the feature fired ≤ 20 times), and for its first 3 top neurons a uniform sample of 3 firings with the neuron active and 3 with it inactive (neuron_on, neuron_off). Each shows up to 10 tokens before and 3 after the firing token, decoded with GPT-2's tokenizer."},
	{"output side", "on feature pages: the tokens most promoted and suppressed by W_dec[f] @ W_U (the transcoder's output direction through the processed unembedding) and by the midcoder's MLP effect (σ(pre₀ + ā·W_mid[f] @ W_in) − σ(pre₀)) @ W_out @ W_U / ā, with pre₀ = b_mid @ W_in + b_in the MLP's pre-activation when no feature fires, ā the feature's mean activation when it fires and σ the activation the midcoder was fitted through: what the midcoder predicts the feature alone does through the MLP, per unit activation."},
	{"cos_fit_pinv", "the cosine between the feature's fitted mid vector W_mid_fit[f] and its pinv-baseline vector W_mid_pinv[f] = (W_dec @ pinv(W_in @ W_out))[f]; NaN without --pinv or when either vector is zero. A feature that never fired in the fit's training tokens keeps its random initial fitted vector (cosine near 0), so the summary's means and median, and the histogram, take only the features that fire on this cache."},
	{"norm_fit, norm_pinv", "the Euclidean norms ‖W_mid_fit[f]‖₂ and ‖W_mid_pinv[f]‖₂."},
	{"first_position_frac", "the fraction of the feature's firings at position 0 of their sequence (BOS in the notebook's rows). That token has nothing before it and is the same in every sequence, so its firings repeat one context rather than sample many: a feature that fires there more than half the time is left out of the rankings (its consistency would be 1 by repetition), though its row and statistics stay."},
	{"fit_trained", "1 when the fit gave the feature's W_mid row a gradient, i.e. the feature fired in at least one of the fit's batches; 0 when it never did, so the row is still its initial value, random with the default --init kaiming (the fit file's \"untrained\" list): the feature's drive, consistency, cos_fit_pinv and effects then describe noise, and it is left out of the summary's means, the plots and the rankings. A midcoder written before ctxdep recorded this counts every feature as trained."},
	{"effect e_t(f)", "the feature's linearised effect on the MLP's output at token t, per unit of its activation: (φ'(pre(t)) ⊙ drive) @ W_out, where pre(t) is the midcoder's pre-activation on all the token's features and φ' the derivative of the activation it was fitted through (ReLU: 1 where pre > 0, else 0). It is the direction f's mid vector moves the MLP output in, given which neurons the context has switched on."},
	{"effect_consistency", "‖Σ_t e_t(f)‖ / Σ_t ‖e_t(f)‖ over the tokens where f fires: 1 when f moves the MLP's output in the same direction in every context, lower as the context turns that direction (not weighted by activation). Unlike consistency, it sees every neuron, not only the top k. NaN when f never fires or its effect is zero everywhere; not computed with --effect=false."},
	{"cos_effect_dec", "the cosine between Σ_t e_t(f) and the transcoder's decoder row W_dec[f]: how well the fixed, context-free output direction matches what the MLP does with f on average."},
	{"cos_effect_pinv", "the cosine between Σ_t e_t(f) and the same sum for the pinv baseline's mid vector (drive W_mid_pinv[f] @ W_in, through the fitted midcoder's φ'(pre(t))): whether the weight-only baseline moves the output the same way; NaN without --pinv."},
	{"mean_effect_norm", "Σ_t ‖e_t(f)‖ / count: the typical size of the effect, so that a tiny effect with consistency 1 can be told apart."},
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

// reportDir is a report's --out: replaced as a whole (internal/atomicdir)
// when it is empty or a ctxdep report (nothing in it but the report's
// files); anything else is refused and left alone.
var reportDir = atomicdir.Spec{What: "report", Replaceable: replaceable}

// WriteReport writes the table, summary, plots, index.md and index.html
// into dir, as a whole (internal/atomicdir): into a temporary directory
// beside dir (.NAME.report-tmp-*), renamed to dir at the end. A failure (a
// full disk) leaves dir as it was, and a rerun leaves no file of the
// earlier report behind (a plot it no longer draws). An existing dir is
// replaced only when it is empty or a ctxdep report. A lock beside dir
// (.NAME.ctxdep.lock, see internal/dirlock) keeps two reports from writing
// dir at once.
func WriteReport(dir string, in RenderInput) (*Rendered, error) {
	if in.Result == nil {
		return nil, errors.New("report: nothing to render")
	}
	var out *Rendered
	err := reportDir.Write(dir, func(tmp string) (err error) {
		out, err = WriteReportFiles(tmp, in)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CheckReportOut reports, before any work, whether WriteReport could
// write dir: nil when dir is outside every activation cache, can be
// written and replaced (see WriteReport) and no other report is writing
// it. WriteReport checks again under its lock.
func CheckReportOut(dir string) error {
	if err := checkOutside(dir); err != nil {
		return err
	}
	return reportDir.Check(dir)
}

func checkOutside(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := actcache.CheckOutside("--out "+dir, abs); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// reportFiles are the names a report directory may hold.
var reportFiles = map[string]bool{ReportCSV: true, ReportSafetensors: true, ReportSummary: true, ReportMarkdown: true, ReportHTML: true,
	ReportExamples: true, plotConsistency: true, plotScatter: true, plotCosine: true, plotLoss: true,
	plotEffect: true, plotEffectScatter: true}

// featurePageName matches a feature page's name inside FeaturesDir.
var featurePageName = regexp.MustCompile(`^[0-9]{5,}\.html$`)

// isFeaturesDir reports whether dir/FeaturesDir holds nothing but feature
// pages (a report's own).
func isFeaturesDir(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, FeaturesDir))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !featurePageName.MatchString(e.Name()) {
			return false
		}
	}
	return true
}

// replaceable returns nil when the directory dir is empty or holds only
// the files of a report (or their leftover temporary files), and an error
// naming what stops it being replaced otherwise.
func replaceable(dir string) error {
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
		if n == FeaturesDir && e.IsDir() && isFeaturesDir(dir) {
			continue
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

// WriteReportFiles writes the report's files into dir, which exists and
// is new: WriteReport's work, and that of each layer of a layer set's
// report, which the set writes as a whole.
func WriteReportFiles(dir string, in RenderInput) (*Rendered, error) {
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
			fmt.Sprintf("%d live features the fit trained, 40 bins of 0.025; the tallest holds %s.", len(live), cap), img})
		xlo, xhi := minMax(lf)
		if xhi-xlo < 1e-9 {
			xlo, xhi = xlo-0.5, xhi+0.5
		}
		pad := 0.03 * (xhi - xlo)
		xlo, xhi = xlo-pad, xhi+pad
		img2 := scatter(lf, cons, xlo, xhi, 0, 1, "Consistency against firing frequency", "log10(freq)", "consistency")
		plots = append(plots, plotInfo{plotScatter, "Consistency against log10 frequency",
			fmt.Sprintf("one point per live feature the fit trained (%d).", len(live)), img2})
	}
	if in.PinvFile == "" {
		out.Omitted = append(out.Omitted, "histogram of cos(fit, pinv): no --pinv file given")
	} else {
		var cos []float64
		for _, st := range res.Features {
			if st.Reliable() && !math.IsNaN(st.CosFitPinv) {
				cos = append(cos, st.CosFitPinv)
			}
		}
		if len(cos) == 0 {
			out.Omitted = append(out.Omitted, "histogram of cos(fit, pinv): no feature in the table fires, or every one that does has a zero fitted or pinv vector")
		} else {
			img, cap := histogram(cos, -1, 1, 40, "Fitted mid vectors against the pinv baseline", "cos(fit, pinv)")
			plots = append(plots, plotInfo{plotCosine, "Histogram of cos(fit, pinv)",
				fmt.Sprintf("%d live features the fit trained (a feature that never fires, or never fired in the fit, keeps its initial fitted vector), 40 bins of 0.05; the tallest holds %s.", len(cos), cap), img})
		}
	}
	switch {
	case !res.Summary.HasEffect:
		out.Omitted = append(out.Omitted, "effect-consistency plots: the effect statistics were not computed (--effect=false)")
	default:
		var ec, gc []float64
		for _, st := range live {
			if !math.IsNaN(st.EffectConsistency) {
				ec, gc = append(ec, st.EffectConsistency), append(gc, st.Consistency)
			}
		}
		if len(ec) == 0 {
			out.Omitted = append(out.Omitted, "effect-consistency plots: no feature in the table has a defined effect consistency")
			break
		}
		img, cap := histogram(ec, 0, 1, 40, "Consistency of the effect through the MLP", "effect_consistency (1: the same direction in every context)")
		plots = append(plots, plotInfo{plotEffect, "Histogram of effect_consistency",
			fmt.Sprintf("%d live features the fit trained, 40 bins of 0.025; the tallest holds %s.", len(ec), cap), img})
		img2 := scatter(gc, ec, 0, 1, 0, 1, "Effect consistency against gating consistency", "consistency (top-k neuron gating)", "effect_consistency")
		plots = append(plots, plotInfo{plotEffectScatter, "effect_consistency against consistency",
			fmt.Sprintf("one point per live feature the fit trained with a defined effect (%d): the gating of the top neurons against the direction of the whole effect.", len(ec)), img2})
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
	if res.Summary.ExamplesTopK > 0 {
		if err := writeExamples(filepath.Join(dir, ReportExamples), res); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		out.Files = append(out.Files, ReportExamples)
	}
	if len(res.Pages) > 0 {
		if err := os.Mkdir(filepath.Join(dir, FeaturesDir), 0o755); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		paged := map[int]bool{}
		for _, f := range res.Pages {
			paged[f] = true
		}
		stats := statsByFeature(res)
		for _, db := range res.Dashboards {
			if !paged[db.Feature] {
				continue
			}
			page, err := featureHTML(res, stats[db.Feature], db)
			if err != nil {
				return nil, fmt.Errorf("report: feature %d's page: %w", db.Feature, err)
			}
			if err := write(FeaturePage(db.Feature), page); err != nil {
				return nil, err
			}
		}
	}
	ex := rankExtremes(res.Features, extremeRows, max(1, res.Summary.MinCount))
	if err := write(ReportMarkdown, []byte(markdown(in, plots, out.Omitted, ex))); err != nil {
		return nil, err
	}
	links := []string{ReportCSV, ReportSummary, ReportSafetensors, ReportMarkdown}
	if res.Summary.ExamplesTopK > 0 {
		links = append(links, ReportExamples)
	}
	page, err := indexHTML(in, plots, out.Omitted, ex, links)
	if err != nil {
		return nil, fmt.Errorf("report: index.html: %w", err)
	}
	if err := write(ReportHTML, page); err != nil {
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

// csvHeader is features.csv's header.
var csvHeader = []string{"feature", "count", "freq", "consistency", "consistency_lo", "consistency_hi", "cos_fit_pinv", "norm_fit", "norm_pinv",
	"effect_consistency", "cos_effect_dec", "cos_effect_pinv", "mean_effect_norm", "fit_trained", "first_position_frac"}

// flag01 is a boolean as features.csv and features.safetensors hold it.
func flag01(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func featuresCSV(res *ReportResult) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(csvHeader)
	for _, st := range res.Features {
		w.Write([]string{strconv.Itoa(st.Feature), strconv.FormatInt(st.Count, 10), fmtF(st.Freq), fmtF(st.Consistency),
			fmtF(st.ConsistencyLo), fmtF(st.ConsistencyHi), fmtF(st.CosFitPinv), fmtF(st.NormFit), fmtF(st.NormPinv),
			fmtF(st.EffectConsistency), fmtF(st.CosEffectDec), fmtF(st.CosEffectPinv), fmtF(st.MeanEffectNorm), strconv.Itoa(int(flag01(st.FitTrained))), fmtF(st.FirstPositionFrac)})
	}
	w.Flush()
	return b.Bytes()
}

func writeFeaturesSafetensors(path string, res *ReportResult) error {
	s, k := len(res.Features), res.Summary.TopK
	cols := map[string][]float32{}
	names := []string{"freq", "consistency", "consistency_lo", "consistency_hi", "cos_fit_pinv", "norm_fit", "norm_pinv",
		"effect_consistency", "cos_effect_dec", "cos_effect_pinv", "mean_effect_norm", "first_position_frac"}
	feature := make([]int32, s)
	for _, n := range names {
		cols[n] = make([]float32, s)
	}
	count := make([]int64, s)
	trained := make([]int32, s)
	neurons := make([]int32, 0, s*k)
	drive := make([]float32, 0, s*k)
	pAct := make([]float32, 0, s*k)
	for i, st := range res.Features {
		feature[i] = int32(st.Feature)
		cols["freq"][i] = float32(st.Freq)
		cols["consistency"][i] = float32(st.Consistency)
		cols["consistency_lo"][i] = float32(st.ConsistencyLo)
		cols["consistency_hi"][i] = float32(st.ConsistencyHi)
		cols["cos_fit_pinv"][i] = float32(st.CosFitPinv)
		cols["norm_fit"][i] = float32(st.NormFit)
		cols["norm_pinv"][i] = float32(st.NormPinv)
		cols["effect_consistency"][i] = float32(st.EffectConsistency)
		cols["cos_effect_dec"][i] = float32(st.CosEffectDec)
		cols["cos_effect_pinv"][i] = float32(st.CosEffectPinv)
		cols["mean_effect_norm"][i] = float32(st.MeanEffectNorm)
		cols["first_position_frac"][i] = float32(st.FirstPositionFrac)
		count[i] = st.Count
		trained[i] = flag01(st.FitTrained)
		neurons = append(neurons, st.Neurons...)
		drive = append(drive, st.Drive...)
		for _, p := range st.PActive {
			pAct = append(pAct, float32(p))
		}
	}
	infos := []safetensors.TensorInfo{{Name: "feature", DType: safetensors.I32, Shape: []int{s}}}
	for _, n := range names {
		infos = append(infos, safetensors.TensorInfo{Name: n, DType: safetensors.F32, Shape: []int{s}})
	}
	infos = append(infos,
		safetensors.TensorInfo{Name: "count", DType: safetensors.I64, Shape: []int{s}},
		safetensors.TensorInfo{Name: "top_neurons", DType: safetensors.I32, Shape: []int{s, k}},
		safetensors.TensorInfo{Name: "drive", DType: safetensors.F32, Shape: []int{s, k}},
		safetensors.TensorInfo{Name: "p_active", DType: safetensors.F32, Shape: []int{s, k}},
		safetensors.TensorInfo{Name: "fit_trained", DType: safetensors.I32, Shape: []int{s}})
	sum, _ := json.Marshal(res.Summary)
	md := map[string]string{"format": "ctxdep-report", "summary": string(sum)}
	if p := res.Summary.Provenance; p != nil {
		pj, _ := json.Marshal(p)
		md["provenance"] = string(pj)
		md["ctxdep_version"] = p.CtxdepVersion
	}
	w, err := safetensors.Create(path, infos, md)
	if err != nil {
		return err
	}
	err = w.WriteInt32(feature)
	for _, n := range names {
		if err != nil {
			break
		}
		err = w.WriteFloat32(cols[n])
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
	if err == nil {
		err = w.WriteInt32(trained)
	}
	if err != nil {
		return errors.Join(err, w.Abort())
	}
	return w.Close()
}

// cachedTokensText is the summary's line on the tokens counted.
func cachedTokensText(s Summary) string {
	if s.SkipFirstPosition {
		return strconv.FormatInt(s.Tokens, 10) + ", each sequence's position 0 left out (--skip-first-position)"
	}
	return strconv.FormatInt(s.Tokens, 10)
}

// untrainedText is the summary's line on the features the fit never
// trained.
func untrainedText(s Summary) string {
	if s.FitUntrained == nil {
		return "unknown: the midcoder file does not record them (written before ctxdep did); every feature is taken as trained"
	}
	return fmt.Sprintf("%d, of which %d fire on the cache (fit_trained 0: left out of the statistics marked trained, the plots and the rankings)", *s.FitUntrained, s.FeaturesLiveUntrained)
}

// summaryRows are the summary's lines as (name, value) for the pages.
func summaryRows(s Summary) [][2]string {
	r := [][2]string{
		{"layer", strconv.Itoa(s.Layer)},
		{"d_model, d_mlp, features", fmt.Sprintf("%d, %d, %d", s.DModel, s.DMLP, s.DSAE)},
		{"cached tokens", cachedTokensText(s)},
		{"feature acts", s.ActsSource},
		{"features that fire (live)", fmt.Sprintf("%d of %d", s.FeaturesLive, s.FeaturesTotal)},
		{"table", s.Selection},
		{"top-k neurons per feature", strconv.Itoa(s.TopK)},
		{"features the fit never trained", untrainedText(s)},
		{"ranked (count ≥ --min-count, trained, first_position_frac ≤ 0.5)", fmt.Sprintf("%d of the table's %d (--min-count %d); %d more fire at position 0 more than half the time", s.FeaturesRanked, s.FeaturesInTable, s.MinCount, s.FeaturesFirstPosition)},
		{"freq mean / median (live)", fmt.Sprintf("%.4g / %.4g", s.FreqMean, s.FreqMedian)},
		{"consistency mean / median (live, trained)", fmt.Sprintf("%.4f / %.4f", s.ConsistencyMean, s.ConsistencyMedian)},
		{"consistency 10th / 90th percentile", fmt.Sprintf("%.4f / %.4f", s.ConsistencyP10, s.ConsistencyP90)},
		{"fraction with consistency > 0.9 / < 0.5", fmt.Sprintf("%.4f / %.4f", s.FracConsistencyAbove09, s.FracConsistencyBelow05)},
		{"norm_fit mean (live, trained)", fmt.Sprintf("%.4g", s.NormFitMean)},
	}
	if s.HasPinv {
		r = append(r, [2]string{"cos(fit, pinv) mean / median (live, trained)", fmt.Sprintf("%.4f / %.4f", s.CosMean, s.CosMedian)},
			[2]string{"norm_pinv mean (live, trained)", fmt.Sprintf("%.4g", s.NormPinvMean)})
	}
	if s.HasEffect {
		r = append(r, [2]string{"effect_consistency mean / median (live, trained)", fmt.Sprintf("%.4f / %.4f", s.EffectConsistencyMean, s.EffectConsistencyMedian)},
			[2]string{"cos(effect, W_dec) median", fmt.Sprintf("%.4f", s.CosEffectDecMedian)})
		if s.HasPinv {
			r = append(r, [2]string{"cos(effect, pinv effect) median", fmt.Sprintf("%.4f", s.CosEffectPinvMedian)})
		}
	}
	return r
}

// liveFeatures returns the features of fs that fire and whose fitted
// vector trained (FeatureStat.Reliable), in table order: those the plots
// and rankings show.
func liveFeatures(fs []FeatureStat) []FeatureStat {
	var live []FeatureStat
	for _, st := range fs {
		if st.Reliable() && !math.IsNaN(st.Consistency) {
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
	return []string{strconv.Itoa(st.Feature), strconv.FormatInt(st.Count, 10), fmt.Sprintf("%.4g", st.Freq), fmt.Sprintf("%.4f", st.Consistency),
		interval(st.ConsistencyLo, st.ConsistencyHi), fmt.Sprintf("%.4f", st.CosFitPinv), fmt.Sprintf("%.4g", st.NormFit), fmt.Sprintf("%.4g", st.NormPinv), neuronList(st)}
}

var featureHeader = []string{"feature", "count", "freq", "consistency", "95% interval", "cos_fit_pinv", "norm_fit", "norm_pinv", "top neurons (P(active | f))"}

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
	b.WriteString("## Summary\n\n" + mdHeader("statistic", "value"))
	for _, r := range summaryRows(res.Summary) {
		b.WriteString(mdRow(r[0], r[1]))
	}
	b.WriteString("\n## Definitions\n\n")
	for _, d := range ReportDefinitions {
		fmt.Fprintf(&b, "- **%s**: %s\n", d.Name, d.Text)
	}
	mdPlots(&b, plots, omitted)
	for _, t := range []struct {
		title string
		rows  []FeatureStat
	}{{"Most context-dependent features (lowest consistency)", ex.low}, {"Most context-independent features (highest consistency)", ex.high}} {
		fmt.Fprintf(&b, "## %s\n\nOnly features that fired at least %d times (--min-count), that the fit trained and that fire at position 0 at most half the time: %d of the table's %d.\n\n%s", t.title,
			res.Summary.MinCount, res.Summary.FeaturesRanked, res.Summary.FeaturesInTable, mdHeader(featureHeader...))
		for _, st := range t.rows {
			b.WriteString(mdRow(featureRow(st)...))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "The full table is `%s` (and `%s`: feature and fit_trained I32, count I64, the other columns as F32 tensors, plus top_neurons, drive and p_active [rows, k]); the summary is `%s`.", ReportCSV, ReportSafetensors, ReportSummary)
	if res.Summary.ExamplesTopK > 0 {
		fmt.Fprintf(&b, " Every feature's examples are in `%s`; %d features have a page in `%s/` (open index.html).", ReportExamples, len(res.Pages), FeaturesDir)
	}
	b.WriteString("\n")
	if p := res.Summary.Provenance; p != nil {
		fmt.Fprintf(&b, "\n---\nctxdep %s.", p.CtxdepVersion)
		for _, in := range p.Inputs {
			fmt.Fprintf(&b, " %s `%s` (sha256 %s).", in.Role, in.Path, shortHash(in.SHA256))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// mdPlots writes index.md's Plots section: each plot with its caption,
// then the plots left out and why.
func mdPlots(b *strings.Builder, plots []plotInfo, omitted []string) {
	b.WriteString("\n## Plots\n\n")
	for _, p := range plots {
		fmt.Fprintf(b, "### %s\n\n![%s](%s)\n\n%s\n\n", p.title, p.title, p.file, p.caption)
	}
	if len(omitted) > 0 {
		b.WriteString("### Omitted\n\n")
		for _, o := range omitted {
			fmt.Fprintf(b, "- %s\n", o)
		}
		b.WriteString("\n")
	}
}
