package analysis

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// The context-dependence report (`ctxdep report --help`).
//
// Definitions (also written into index.md and index.html):
//
//	count_f        cached tokens t with acts_f(t) > 0.
//	freq_f         count_f / the number of cached tokens.
//	drive_f        W_mid[f] @ W_in (N): how strongly f's fitted mid vector
//	               drives each MLP neuron (W_in the layer's processed MLP
//	               input weights, C × N).
//	top-k neurons  the k neurons n with the largest |drive_f[n]| (ties: the
//	               lower index first), in that order.
//	active_n(t)    the midcoder's pre-activation (mid(t) @ W_in + b_in)[n] > 0
//	               on token t, with mid(t) = acts(t) @ W_mid + b_mid: the
//	               midcoder forward on all of the token's features, not f alone.
//	P_f[n]         P(active_n | f active) = #{t : acts_f(t) > 0, active_n(t)}
//	               / #{t : acts_f(t) > 0}.
//	consistency_f  mean over f's top-k neurons of |2·P_f[n] − 1|: 1 when f
//	               switches the same neurons on (or off) every time it fires
//	               (context-independent), 0 when each is on half the time
//	               (context-dependent). NaN when f never fires.
//	consistency interval
//	               [consistency_lo, consistency_hi]: each top neuron's
//	               P_f[n] gets its 95% Wilson score interval (count_f
//	               trials), |2p − 1| is bounded over it (0 when it holds
//	               1/2), and the bounds are averaged over the top-k neurons
//	               (consistencyInterval). It contains consistency_f whenever
//	               every neuron's P lies in its own interval; no correction
//	               for the neurons' dependence or for correlated tokens.
//	cos_fit_pinv_f cosine between W_mid_fit[f] and W_mid_pinv[f] (NaN without
//	               --pinv, or when either vector is zero).
//	norm_fit_f     ‖W_mid_fit[f]‖₂; norm_pinv_f ‖W_mid_pinv[f]‖₂.

// ReportInput is what Report needs.
type ReportInput struct {
	Cache *actcache.Cache
	// TC encodes the cached x when the cache stores no acts; it may be nil
	// when it does.
	TC  *transcoder.Transcoder
	MLP *midcoder.MLP    // the layer's processed MLP (W_in, b_in)
	Fit *midcoder.Params // the fitted midcoder
	// FitUntrained lists the features whose fitted row never trained
	// (midcoder.Meta.Untrained): FeatureStat.FitTrained false. nil:
	// unknown (a midcoder file from before ctxdep recorded it), every
	// feature counted as trained.
	FitUntrained []int
	Pinv         *midcoder.Params // optional: the pinv baseline
	TopK         int              // neurons per feature (≥ 1)
	// Features, when > 0, keeps only the first Features live features
	// (those that fire at least once on the cache) in the table.
	Features int
	// Examples is the number of top activating contexts per feature on its
	// dashboard (DefaultExamples); 0 gathers no dashboards at all.
	Examples int
	// MinCount is the fewest firings a feature needs to be ranked in the
	// most/least context-dependent tables (DefaultMinCount).
	MinCount int
	// SkipFirstPosition leaves every sequence's position 0 out of every
	// statistic (counts, freq, gating, effects, examples): there the token
	// (BOS in the notebook's rows) has nothing before it, the same context
	// in every sequence.
	SkipFirstPosition bool
	// Pages bounds the number of features with a page (DefaultPages), in
	// pagedFeatures' order: the ranked features first.
	Pages int
	// WU (C, Vocab) is the model's processed unembedding, for the pages'
	// output-side view; nil leaves the view out.
	WU    []float32
	Vocab int
	// NeuronpediaBase, when set (see NeuronpediaBase), links each feature
	// page to the feature's public page: the base followed by the index.
	NeuronpediaBase string
	// Effect computes the effect statistics (EffectAccumulator) in the
	// same pass: effect_consistency, cos_effect_dec (when TC's decoder
	// fits), cos_effect_pinv (with Pinv). It costs k·N·C flops per firing
	// (feature, token) pair, far more than the rest of the pass.
	Effect bool
	// NewEffect makes the effect statistics' pass (nil: NewCPUEffect).
	NewEffect NewEffect
	// Connections, when set, are `ctxdep connections` into this layer:
	// each feature page lists the feature's strongest inputs by weight
	// and by data.
	Connections *ConnTable
}

// FeatureStat is one row of the report's table.
type FeatureStat struct {
	Feature     int     `json:"feature"`
	Count       int64   `json:"count"` // tokens on which it fires
	Freq        float64 `json:"freq"`
	Consistency float64 `json:"consistency"`
	CosFitPinv  float64 `json:"cos_fit_pinv"`
	NormFit     float64 `json:"norm_fit"`
	NormPinv    float64 `json:"norm_pinv"`
	// ConsistencyLo and ConsistencyHi bound Consistency (see
	// consistencyInterval): NaN when the feature never fires.
	ConsistencyLo float64   `json:"consistency_lo"`
	ConsistencyHi float64   `json:"consistency_hi"`
	Neurons       []int32   `json:"neurons"`  // top-k neurons by |drive|
	Drive         []float32 `json:"drive"`    // drive_f at those neurons
	PActive       []float64 `json:"p_active"` // P(neuron active | f active)
	// Effect statistics (EffectResult); NaN when not computed or undefined.
	EffectConsistency float64 `json:"effect_consistency"`
	CosEffectDec      float64 `json:"cos_effect_dec"`
	CosEffectPinv     float64 `json:"cos_effect_pinv"`
	MeanEffectNorm    float64 `json:"mean_effect_norm"`
	// FitTrained is false when the fit never gave the feature's W_mid row
	// a gradient (it never fired in the fit's batches): the row is its
	// initial value (random by default), and every statistic computed
	// from it (drive, consistency, cos_fit_pinv, the effects) describes
	// that, not the fit. Such
	// features stay in the table but are left out of the summary's means
	// and the rankings.
	FitTrained bool `json:"fit_trained"`
	// FirstPositionFrac is the fraction of the feature's firings at
	// position 0 of their sequence (BOS in the notebook's rows): the same
	// token with nothing before it in every sequence, so one context
	// repeated, not independent ones. Rankings leave out features that
	// fire there more than half the time (FirstPositionRankable).
	FirstPositionFrac float64 `json:"first_position_frac"`
}

// FirstPositionRankable is the largest first_position_frac a feature may
// have to be ranked: beyond it, most of its firings are one context.
const FirstPositionRankable = 0.5

// Ranked reports whether st is ranked at minCount: reliable, fired at
// least minCount times, and mostly beyond its sequences' first position.
func (st *FeatureStat) Ranked(minCount int) bool {
	return st.Reliable() && st.Count >= int64(minCount) && !(st.FirstPositionFrac > FirstPositionRankable)
}

// Reliable reports whether st's midcoder statistics mean something: the
// feature fires on the data and the fit trained its vector.
func (st *FeatureStat) Reliable() bool { return st.Count > 0 && st.FitTrained }

// Summary is summary.json.
type Summary struct {
	Layer        int   `json:"layer"`
	DModel       int   `json:"d_model"`
	DSAE         int   `json:"d_sae"`
	DMLP         int   `json:"d_mlp"`
	Tokens       int64 `json:"tokens"`
	TopK         int   `json:"top_k"`
	FeaturesFlag int   `json:"features_flag"` // --features (0: all)
	// SkipFirstPosition: position 0 of every sequence was left out
	// (--skip-first-position); Tokens counts the tokens kept.
	SkipFirstPosition bool   `json:"skip_first_position,omitempty"`
	Selection         string `json:"selection"`
	ActsSource        string `json:"acts_source"` // "stored in the cache" or "encoded by the transcoder"
	FeaturesTotal     int    `json:"features_total"`
	FeaturesLive      int    `json:"features_live"` // fire at least once on the cache
	// FitUntrained counts the features the fit never trained (the
	// midcoder's untrained list, all of them: fit_trained 0 in the
	// table), nil (JSON null) when the midcoder file does not say;
	// FeaturesLiveUntrained those of them that fire on the cache (all
	// features, not only the table's), which the means, plots and
	// rankings leave out.
	FitUntrained          *int `json:"fit_untrained"`
	FeaturesLiveUntrained int  `json:"features_live_untrained"`
	// FeaturesFirstPosition counts the features left out of the rankings
	// because most of their firings are at position 0 (FeatureStat.Ranked).
	FeaturesFirstPosition  int     `json:"features_first_position"`
	FeaturesInTable        int     `json:"features_in_table"`
	HasPinv                bool    `json:"has_pinv"`
	FreqMean               float64 `json:"freq_mean"` // over the table's live features
	FreqMedian             float64 `json:"freq_median"`
	ConsistencyMean        float64 `json:"consistency_mean"` // the consistency statistics: over the table's live features that the fit trained
	ConsistencyMedian      float64 `json:"consistency_median"`
	ConsistencyP10         float64 `json:"consistency_p10"`
	ConsistencyP90         float64 `json:"consistency_p90"`
	FracConsistencyAbove09 float64 `json:"frac_consistency_above_0.9"`
	FracConsistencyBelow05 float64 `json:"frac_consistency_below_0.5"`
	CosMean                float64 `json:"cos_fit_pinv_mean,omitempty"` // over the table's live trained features with a defined cosine; the norms' means over its live trained features
	CosMedian              float64 `json:"cos_fit_pinv_median,omitempty"`
	NormFitMean            float64 `json:"norm_fit_mean"`
	NormPinvMean           float64 `json:"norm_pinv_mean,omitempty"`
	MinCount               int     `json:"min_count"`       // --min-count of the rankings (FeatureStat.Ranked)
	FeaturesRanked         int     `json:"features_ranked"` // table features ranked (FeatureStat.Ranked)
	ExamplesTopK           int     `json:"examples_top_k"`  // --examples (0: no dashboards)
	FeaturePages           int     `json:"feature_pages"`   // features with a page under features/
	// Effect statistics over the table's live features (0 when none is
	// defined; HasEffect false when they were not computed).
	HasEffect               bool    `json:"has_effect"`
	EffectConsistencyMedian float64 `json:"effect_consistency_median,omitempty"`
	EffectConsistencyMean   float64 `json:"effect_consistency_mean,omitempty"`
	CosEffectDecMedian      float64 `json:"cos_effect_dec_median,omitempty"`
	CosEffectPinvMedian     float64 `json:"cos_effect_pinv_median,omitempty"`
	// Provenance says what made the report; set by the caller.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// Provenance records what made a report: the ctxdep version, its inputs
// with their sizes and SHA-256 hashes, and its flags.
type Provenance struct {
	CtxdepVersion string            `json:"ctxdep_version"`
	Inputs        []ProvenanceInput `json:"inputs"`
	Flags         map[string]string `json:"flags"`
}

// ProvenanceInput is one input file of a report.
type ProvenanceInput struct {
	Role string `json:"role"` // cache manifest, midcoder, pinv, model, transcoder, history, ...
	provenance.File
}

// ReportResult is the report's content.
type ReportResult struct {
	Summary  Summary
	Features []FeatureStat
	// Dashboards are the live table features' dashboards, in table order
	// (nil with Examples 0); those with a page carry the output view.
	Dashboards []*Dashboard
	// Pages lists the features with a page, ascending.
	Pages           []int
	NeuronpediaBase string
	Connections     *ConnTable // into this layer, for the pages; nil without
}

// MidcoderWant is what a midcoder file must match to be used on a cache:
// its layer and d_model, and where known (non-zero) the transcoder's width,
// the model and transcoder files, and the method that made it.
type MidcoderWant struct {
	Layer, DModel int
	DSAE          int             // 0: not known yet
	Model         provenance.File // the cache's model; no SHA-256: not checked
	// Transcoder is the transcoder whose features the midcoder's rows must
	// be: the one whose acts the cache stores, else the one loaded.
	Transcoder provenance.File
	Method     string // "pinv" for --pinv (methodCommand's keys); "": any
	Flag       string // the flag that named the file, for the errors
}

// methodCommand is the command that writes a midcoder of each method.
var methodCommand = map[string]string{"fit": "fit", "pinv": "pinv-baseline"}

// CheckMidcoderMeta returns a clear error when a midcoder file's metadata
// does not match want: a midcoder fitted for another layer, width, model
// or transcoder (same width, other features: its rows would be applied to
// the wrong features), or a fit given where pinv-baseline's file belongs.
func CheckMidcoderMeta(file string, meta midcoder.Meta, want MidcoderWant) error {
	name := "midcoder " + file
	if want.Flag != "" {
		name = want.Flag + " " + file
	}
	dSAE := want.DSAE
	if dSAE == 0 {
		dSAE = meta.DSAE
	}
	if meta.Layer != want.Layer || meta.DModel != want.DModel || meta.DSAE != dSAE {
		if want.DSAE == 0 {
			return fmt.Errorf("%s is for layer %d, d_model %d; the cache has layer %d, d_model %d", name, meta.Layer, meta.DModel, want.Layer, want.DModel)
		}
		return fmt.Errorf("%s is for layer %d, d_model %d, %d features; the cache and transcoder have layer %d, d_model %d, %d features",
			name, meta.Layer, meta.DModel, meta.DSAE, want.Layer, want.DModel, want.DSAE)
	}
	if m := meta.Provenance.Model; m.SHA256 != "" && want.Model.SHA256 != "" && !provenance.Same(m, want.Model) {
		return fmt.Errorf("%s was made with another model (%s, sha256 %.12s…) than the cache's (sha256 %.12s…)", name, m.Path, m.SHA256, want.Model.SHA256)
	}
	if t := meta.Provenance.Transcoder; t.SHA256 != "" && want.Transcoder.SHA256 != "" && !provenance.Same(t, want.Transcoder) {
		return fmt.Errorf("%s was made with another transcoder (%s, sha256 %.12s…) than this one (%s, sha256 %.12s…): its rows belong to that transcoder's features",
			name, t.Path, t.SHA256, want.Transcoder.Path, want.Transcoder.SHA256)
	}
	if want.Method != "" && meta.Method != want.Method {
		return fmt.Errorf("%s records method %q, not %q: give the file that ctxdep %s wrote", name, meta.Method, want.Method, methodCommand[want.Method])
	}
	return nil
}

// ReportRows is about how many tokens one of Report's batches holds
// (whole sequences, at least one): the batch an EffectPass's Add takes.
const ReportRows = 512

// CheckReportSettings checks Report's settings before any work: at least
// one neuron per feature, and a feature count of 0 (all) or more.
func CheckReportSettings(topK, features int) error {
	switch {
	case topK < 1:
		return fmt.Errorf("--top-k %d: want at least 1", topK)
	case features < 0:
		return fmt.Errorf("--features %d: want 0 (all) or more", features)
	}
	return nil
}

// Bounds of the dashboard settings: memory grows with --examples per
// feature, and the pages' output views cost a V-wide product each.
const (
	MaxExamples = 100
	MaxPages    = 5000
)

// CheckDashboardSettings checks --examples, --min-count and --pages.
func CheckDashboardSettings(examples, minCount, pages int) error {
	switch {
	case examples < 0 || examples > MaxExamples:
		return fmt.Errorf("--examples %d: want 0 (no dashboards) to %d", examples, MaxExamples)
	case minCount < 1:
		return fmt.Errorf("--min-count %d: want at least 1", minCount)
	case pages < 0 || pages > MaxPages:
		return fmt.Errorf("--pages %d: want 0 to %d", pages, MaxPages)
	}
	return nil
}

// Report streams once over the cache and computes the per-feature
// statistics defined above, and with in.Examples > 0 the dashboards
// (dashboard.go) of the table's live features, with the output-side view
// (output.go) for the features that get a page. Memory: two shards (one
// read ahead), ReportRows × (C + N) floats, F × TopK counters, and about
// 6.5 KB per feature that fires for the dashboards.
func Report(ctx context.Context, in ReportInput, bar *progress.Bar) (*ReportResult, error) {
	if in.Cache == nil || in.MLP == nil || in.Fit == nil {
		return nil, fmt.Errorf("report: cache, MLP and midcoder are required")
	}
	man := in.Cache.Manifest
	c, n, f := in.MLP.C, in.MLP.N, in.Fit.F
	if man.NTokens <= 0 || len(man.Shards) == 0 {
		return nil, fmt.Errorf("report: the cache %s holds no tokens", in.Cache.Dir)
	}
	if man.DModel != c || in.Fit.C != c {
		return nil, fmt.Errorf("report: the cache has d_model %d, the MLP %d, the midcoder %d", man.DModel, c, in.Fit.C)
	}
	if in.Pinv != nil && (in.Pinv.F != f || in.Pinv.C != c) {
		return nil, fmt.Errorf("report: the pinv midcoder is %d × %d, the fitted one %d × %d", in.Pinv.F, in.Pinv.C, f, c)
	}
	source := "stored in the cache"
	if !man.WithActs {
		if in.TC == nil {
			return nil, fmt.Errorf("report: the cache %s stores no acts: a transcoder is needed to encode its x", in.Cache.Dir)
		}
		if in.TC.DIn != c || in.TC.DSAE != f {
			return nil, fmt.Errorf("report: the transcoder (d_in %d, %d features) does not fit the cache (d_model %d) and midcoder (%d features)", in.TC.DIn, in.TC.DSAE, c, f)
		}
		source = "encoded by the transcoder"
	} else if man.DSAE != f {
		return nil, fmt.Errorf("report: the cache stores acts of %d features, the midcoder has %d", man.DSAE, f)
	}
	if err := CheckReportSettings(in.TopK, in.Features); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if t := in.Connections; t != nil && (t.Summary.TargetLayer != man.Layer || t.Summary.Targets != f) {
		return nil, fmt.Errorf("report: the connections in %s are into layer %d's %d features; the cache is layer %d, the midcoder has %d features",
			t.Dir, t.Summary.TargetLayer, t.Summary.Targets, man.Layer, f)
	}
	if in.MinCount == 0 {
		in.MinCount = 1
	}
	if err := CheckDashboardSettings(in.Examples, in.MinCount, in.Pages); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if in.WU != nil && len(in.WU) != c*in.Vocab {
		return nil, fmt.Errorf("report: the unembedding holds %d values, want d_model %d × vocab %d", len(in.WU), c, in.Vocab)
	}
	// A NaN compares false everywhere: a non-finite midcoder would read as
	// features that switch no neuron on, perfectly context-independent.
	if err := in.Fit.CheckFinite(); err != nil {
		return nil, fmt.Errorf("report: the fitted midcoder's %w: refit it (with a lower --lr)", err)
	}
	if in.Pinv != nil {
		if err := in.Pinv.CheckFinite(); err != nil {
			return nil, fmt.Errorf("report: the pinv midcoder's %w: rerun pinv-baseline", err)
		}
	}
	k := min(in.TopK, n)

	neurons, drive := topNeurons(in.Fit.WMid, in.MLP.WIn, f, c, n, k)

	count := make([]int64, f)
	first := make([]int64, f) // firings at position 0 of a sequence
	on := make([]int64, f*k)
	tr := midcoder.NewModel(in.MLP, in.Fit, max(ReportRows, man.ContextLength))
	var ro actcache.ReadOptions
	if !man.WithActs {
		ro.Encoder = in.TC.NewEncoder()
	}
	rd, err := in.Cache.NewReader(ctx, ro)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var dash *dashAcc
	if in.Examples > 0 {
		dash = newDashAcc(f, in.Examples, k)
	}
	// W_dec, when the transcoder's fits: cos_effect_dec and the pages'
	// output view.
	var wDec []float32
	if in.TC != nil && in.TC.DSAE == f && in.TC.DOut == c && len(in.TC.WDec) == f*c {
		wDec = in.TC.WDec
	}
	var effect EffectPass
	if in.Effect {
		newEffect := in.NewEffect
		if newEffect == nil {
			newEffect = NewCPUEffect
		}
		if effect, err = newEffect(in.MLP, in.Fit, in.Pinv, wDec); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		defer effect.Close()
	}
	var (
		tokens  int64
		skipped transcoder.Acts // a batch's acts without position 0 (SkipFirstPosition)
	)
	for {
		b, err := rd.Next(max(1, ReportRows/man.ContextLength))
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		acts, kept := b.Acts, int64(len(b.Tokens))
		if in.SkipFirstPosition {
			acts, kept = withoutFirstPosition(&skipped, b.Acts, man.ContextLength), kept-int64(b.N)
		}
		pre := tr.PreActivations(acts)
		accumulate(acts, pre, n, neurons, k, man.ContextLength, count, first, on)
		if effect != nil {
			if err := effect.Add(acts, pre); err != nil {
				return nil, fmt.Errorf("report: effect statistics: %w", err)
			}
		}
		if dash != nil {
			dash.add(&window{tokens: b.Tokens, acts: acts, first: b.First, t: man.ContextLength}, pre, n, neurons)
		}
		if bar != nil {
			bar.Add(int64(len(b.Tokens)), "")
		}
		tokens += kept
	}

	live := 0
	for _, v := range count {
		if v > 0 {
			live++
		}
	}
	var sel []int
	selection := fmt.Sprintf("all %d features (%d of them fire on the cache; the others have freq 0 and consistency NaN); gating statistics over each feature's top %d neurons by |W_mid[f] @ W_in|", f, live, k)
	if in.Features > 0 {
		for i := 0; i < f && len(sel) < in.Features; i++ {
			if count[i] > 0 {
				sel = append(sel, i)
			}
		}
		selection = fmt.Sprintf("the first %d live features by index (of %d live, %d in all; --features %d); gating statistics over each feature's top %d neurons by |W_mid[f] @ W_in|", len(sel), live, f, in.Features, k)
	} else {
		sel = make([]int, f)
		for i := range sel {
			sel[i] = i
		}
	}

	var er *EffectResult
	if effect != nil {
		if er, err = effect.Result(); err != nil {
			return nil, fmt.Errorf("report: effect statistics: %w", err)
		}
	}
	untrained := map[int]bool{}
	for _, fi := range in.FitUntrained {
		untrained[fi] = true
	}
	res := &ReportResult{Features: make([]FeatureStat, len(sel))}
	for i, fi := range sel {
		st := FeatureStat{Feature: fi, Count: count[fi], Freq: float64(count[fi]) / float64(tokens), FitTrained: !untrained[fi],
			FirstPositionFrac: float64(first[fi]) / float64(count[fi]), // NaN (0/0) when it never fires
			Neurons:           neurons[fi*k : (fi+1)*k], Drive: drive[fi*k : (fi+1)*k],
			CosFitPinv: math.NaN(), NormPinv: math.NaN(),
			EffectConsistency: math.NaN(), CosEffectDec: math.NaN(), CosEffectPinv: math.NaN(), MeanEffectNorm: math.NaN()}
		if er != nil {
			st.EffectConsistency, st.CosEffectDec = er.EffectConsistency[fi], er.CosEffectDec[fi]
			st.CosEffectPinv, st.MeanEffectNorm = er.CosEffectPinv[fi], er.MeanEffectNorm[fi]
		}
		st.PActive = make([]float64, k)
		st.Consistency = math.NaN()
		st.ConsistencyLo, st.ConsistencyHi = consistencyInterval(on[fi*k:(fi+1)*k], count[fi])
		if count[fi] > 0 {
			for j := 0; j < k; j++ {
				st.PActive[j] = float64(on[fi*k+j]) / float64(count[fi])
			}
			st.Consistency = consistency(on[fi*k:(fi+1)*k], count[fi])
		} else {
			for j := range st.PActive {
				st.PActive[j] = math.NaN()
			}
		}
		fit := in.Fit.WMid[fi*c : (fi+1)*c]
		st.NormFit = norm64(fit)
		if in.Pinv != nil {
			pv := in.Pinv.WMid[fi*c : (fi+1)*c]
			st.NormPinv = norm64(pv)
			if st.NormFit > 0 && st.NormPinv > 0 {
				var d float64
				for j, v := range fit {
					d += float64(v) * float64(pv[j])
				}
				st.CosFitPinv = d / (st.NormFit * st.NormPinv)
			}
		}
		res.Features[i] = st
	}
	res.Summary = summarize(res.Features, Summary{
		Layer: man.Layer, DModel: c, DSAE: f, DMLP: n, Tokens: tokens, TopK: k, FeaturesFlag: in.Features,
		Selection: selection, ActsSource: source, FeaturesTotal: f, FeaturesLive: live,
		FeaturesInTable: len(sel), HasPinv: in.Pinv != nil, MinCount: in.MinCount, ExamplesTopK: in.Examples,
		HasEffect: in.Effect, SkipFirstPosition: in.SkipFirstPosition,
	})
	if in.FitUntrained != nil {
		n := len(in.FitUntrained)
		res.Summary.FitUntrained = &n
		for _, fi := range in.FitUntrained {
			if count[fi] > 0 {
				res.Summary.FeaturesLiveUntrained++
			}
		}
	}
	for _, st := range res.Features {
		switch {
		case st.Ranked(in.MinCount):
			res.Summary.FeaturesRanked++
		case st.Reliable() && st.Count >= int64(in.MinCount):
			res.Summary.FeaturesFirstPosition++
		}
	}
	if dash == nil {
		return res, nil
	}

	// Dashboards for the table's live features; pages for up to in.Pages
	// of them (pagedFeatures: the ranked ones first).
	res.NeuronpediaBase = in.NeuronpediaBase
	res.Connections = in.Connections
	paged := pagedFeatures(res.Features, in.MinCount, in.Pages)
	means := map[int]float64{}
	for i := range res.Features {
		st := &res.Features[i]
		if st.Count == 0 {
			continue
		}
		db := dash.dashboard(st, on)
		dash.feats[st.Feature] = nil // its examples now live in db
		res.Dashboards = append(res.Dashboards, db)
		if paged[st.Feature] {
			means[st.Feature] = db.MeanAct
		}
	}
	for fi := range paged {
		res.Pages = append(res.Pages, fi)
	}
	slices.Sort(res.Pages)
	res.Summary.FeaturePages = len(res.Pages)
	oi := outputInput{wU: in.WU, v: in.Vocab, mlp: in.MLP, fit: in.Fit, c: c, n: n, means: means}
	oi.wDec = wDec
	views := outputViews(oi, res.Pages)
	for _, db := range res.Dashboards {
		db.Output = views[db.Feature]
	}
	return res, nil
}

// pagedFeatures chooses at most pages features of fs for a page, in this
// order: those of the two ranking tables, then the other ranked features
// (FeatureStat.Ranked), then the other live trained features, then the
// live untrained ones, each group by index.
func pagedFeatures(fs []FeatureStat, minCount, pages int) map[int]bool {
	paged := map[int]bool{}
	add := func(st FeatureStat) {
		if len(paged) < pages {
			paged[st.Feature] = true
		}
	}
	ranked := rankExtremes(fs, extremeRows, minCount)
	for _, st := range append(slices.Clone(ranked.low), ranked.high...) {
		add(st)
	}
	for _, group := range []func(st FeatureStat) bool{
		func(st FeatureStat) bool { return st.Ranked(minCount) },
		func(st FeatureStat) bool { return st.Reliable() },
		func(st FeatureStat) bool { return st.Count > 0 },
	} {
		for _, st := range fs {
			if group(st) {
				add(st)
			}
		}
	}
	return paged
}

// rankExtremes returns up to n of the table's ranked features
// (FeatureStat.Ranked at minCount), of lowest and of highest consistency
// (ties: the larger count first).
func rankExtremes(fs []FeatureStat, n, minCount int) extremeTables {
	var ok []FeatureStat
	for _, st := range liveFeatures(fs) {
		if st.Ranked(minCount) {
			ok = append(ok, st)
		}
	}
	return extremes(ok, n)
}

// withoutFirstPosition returns a (whole sequences of t tokens) with every
// sequence's position-0 row emptied, in dst's buffers.
func withoutFirstPosition(dst *transcoder.Acts, a *transcoder.Acts, t int) *transcoder.Acts {
	dst.Indptr, dst.Indices, dst.Values = append(dst.Indptr[:0], 0), dst.Indices[:0], dst.Values[:0]
	for r := range a.Rows() {
		if r%t != 0 {
			idx, val := a.Row(r)
			dst.Indices, dst.Values = append(dst.Indices, idx...), append(dst.Values, val...)
		}
		dst.Indptr = append(dst.Indptr, int64(len(dst.Indices)))
	}
	return dst
}

// consistency is the mean over a feature's top neurons of |2·P(active|f) −
// 1|, P = on_j/count: Σ_j |2·on_j − count| / (count·k), the integers summed
// exactly and divided once, so that a value of exactly 1/2 or 9/10 (common
// at small counts) comes out as that value, on the right side of the
// summary's thresholds (a sum of k rounded terms can land one step below).
func consistency(on []int64, count int64) float64 {
	var s int64
	for _, o := range on {
		s += max(2*o-count, count-2*o)
	}
	return float64(s) / (float64(count) * float64(len(on)))
}

// accumulate adds one batch of tokens, whole sequences of t, to the
// counters: count[f] += 1 per token where f fires, first[f] += 1 when that
// token is its sequence's first; on[f·k + j] += 1 when, in addition, the
// pre-activation (pre (M, N), the midcoder's mid @ W_in + b_in) of f's
// j-th top neuron is > 0.
func accumulate(acts *transcoder.Acts, pre []float32, n int, neurons []int32, k, t int, count, first, on []int64) {
	m := acts.Rows()
	for r := 0; r < m; r++ {
		idx, val := acts.Row(r)
		pr := pre[r*n : (r+1)*n]
		for i, fi := range idx {
			if !(val[i] > 0) {
				continue
			}
			count[fi]++
			if r%t == 0 {
				first[fi]++
			}
			nb := neurons[int(fi)*k : (int(fi)+1)*k]
			o := on[int(fi)*k : (int(fi)+1)*k]
			for j, nn := range nb {
				if pr[nn] > 0 {
					o[j]++
				}
			}
		}
	}
}

// topNeurons returns, for each feature, the k neurons with the largest
// |(W_mid[f] @ W_in)[n]| (descending; ties by lower index) and those
// drive values, both (F, k). It computes the product in blocks of
// features so that memory stays at a block × N.
func topNeurons(wMid, wIn []float32, f, c, n, k int) ([]int32, []float32) {
	const block = 256
	neurons := make([]int32, f*k)
	drive := make([]float32, f*k)
	buf := make([]float32, block*n)
	for f0 := 0; f0 < f; f0 += block {
		b := min(block, f-f0)
		d := buf[:b*n]
		kernels.MatMul(d, wMid[f0*c:(f0+b)*c], wIn, b, c, n, false)
		par.For(b, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := d[i*n : (i+1)*n]
				nb := neurons[(f0+i)*k : (f0+i+1)*k]
				dv := drive[(f0+i)*k : (f0+i+1)*k]
				topK(row, nb, dv)
			}
		})
	}
	return neurons, drive
}

// topK fills idx and val with the len(idx) entries of row of largest
// absolute value, descending, ties to the lower index.
func topK(row []float32, idx []int32, val []float32) {
	k := len(idx)
	filled := 0
	for j, v := range row {
		a := abs32(v)
		if filled == k && !(a > abs32(val[k-1])) {
			continue
		}
		pos := min(filled, k-1)
		for pos > 0 && a > abs32(val[pos-1]) {
			if pos < k {
				idx[pos], val[pos] = idx[pos-1], val[pos-1]
			}
			pos--
		}
		idx[pos], val[pos] = int32(j), v
		if filled < k {
			filled++
		}
	}
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

func norm64(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// summarize fills s's means, medians and fractions: freq over the live
// features of fs (count > 0), everything computed from the fitted vectors
// over the reliable ones (live, and trained by the fit): a vector the fit
// never trained is its random initial one, and a feature that never fires
// on the data most likely never fired in the fit either (older midcoder
// files do not say), so either would pull the cosine's mean towards 0 and
// the consistency towards what random vectors give.
func summarize(fs []FeatureStat, s Summary) Summary {
	var freq, cons, cos, nf, np []float64
	for _, st := range fs {
		if st.Count == 0 {
			continue
		}
		freq = append(freq, st.Freq)
		if !st.FitTrained {
			continue
		}
		nf = append(nf, st.NormFit)
		if !math.IsNaN(st.NormPinv) {
			np = append(np, st.NormPinv)
		}
		if !math.IsNaN(st.CosFitPinv) {
			cos = append(cos, st.CosFitPinv)
		}
		cons = append(cons, st.Consistency)
	}
	// Means before sorting: they sum in table order.
	s.FreqMean, s.ConsistencyMean = mean(freq), mean(cons)
	slices.Sort(freq)
	slices.Sort(cons)
	s.FreqMedian = quantile(freq, 0.5)
	s.ConsistencyMedian = quantile(cons, 0.5)
	s.ConsistencyP10, s.ConsistencyP90 = quantile(cons, 0.1), quantile(cons, 0.9)
	var hi, lo int
	for _, v := range cons {
		if v > 0.9 {
			hi++
		}
		if v < 0.5 {
			lo++
		}
	}
	if len(cons) > 0 {
		s.FracConsistencyAbove09 = float64(hi) / float64(len(cons))
		s.FracConsistencyBelow05 = float64(lo) / float64(len(cons))
	}
	s.NormFitMean = mean(nf)
	if s.HasPinv {
		s.CosMean = mean(cos)
		slices.Sort(cos)
		s.CosMedian = quantile(cos, 0.5)
		s.NormPinvMean = mean(np)
	}
	if s.HasEffect {
		var ec, cd, cp []float64
		for _, st := range fs {
			if !st.Reliable() {
				continue
			}
			for _, x := range []struct {
				v   float64
				dst *[]float64
			}{{st.EffectConsistency, &ec}, {st.CosEffectDec, &cd}, {st.CosEffectPinv, &cp}} {
				if !math.IsNaN(x.v) {
					*x.dst = append(*x.dst, x.v)
				}
			}
		}
		s.EffectConsistencyMean = mean(ec)
		slices.Sort(ec)
		slices.Sort(cd)
		slices.Sort(cp)
		s.EffectConsistencyMedian, s.CosEffectDecMedian, s.CosEffectPinvMedian = quantile(ec, 0.5), quantile(cd, 0.5), quantile(cp, 0.5)
	}
	// JSON cannot hold NaN: empty sets give 0 here.
	for _, p := range []*float64{&s.FreqMean, &s.FreqMedian, &s.ConsistencyMean, &s.ConsistencyMedian, &s.ConsistencyP10, &s.ConsistencyP90, &s.CosMean, &s.CosMedian, &s.NormFitMean, &s.NormPinvMean,
		&s.EffectConsistencyMean, &s.EffectConsistencyMedian, &s.CosEffectDecMedian, &s.CosEffectPinvMedian} {
		if math.IsNaN(*p) || math.IsInf(*p, 0) {
			*p = 0
		}
	}
	return s
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// quantile is the linear-interpolation quantile (numpy's default) of s,
// sorted ascending.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	fr := pos - float64(i)
	return s[i] + fr*(s[i+1]-s[i])
}
