package analysis

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// The hand-computed case: C = 2, N = 3 neurons, F = 3 features, k = 2.
//
//	W_in = [[1, 0, −1], [0, 1, 1]], b_in = 0, b_mid = [0, −0.5]
//	W_mid_fit:  f0 [1, 0], f1 [0, 2], f2 [3, 4]
//	drive = W_mid @ W_in: f0 [1, 0, −1] → top neurons 0, 2 (tie, lower first)
//	                      f1 [0, 2, 2]  → 1, 2
//	                      f2 [3, 4, 1]  → 1, 0
//
// Four tokens (2 sequences × 2), acts (f0, f1, f2):
//
//	t0 (1, 0, 0):   mid [1, −0.5]  pre [1, −0.5, −1.5]  on: n0
//	t1 (2, 1, 0):   mid [2, 1.5]   pre [2, 1.5, −0.5]   on: n0 n1
//	t2 (0, 0.5, 0): mid [0, 0.5]   pre [0, 0.5, 0.5]    on: n1 n2 (0 is not > 0)
//	t3 (0, 0, 0):   no feature
//
// f0 fires on t0, t1: freq 2/4; P(n0) = 1, P(n2) = 0 → consistency 1.
// f1 fires on t1, t2: freq 2/4; P(n1) = 1, P(n2) = 1/2 → consistency 1/2.
// f2 never fires: freq 0, consistency NaN.
// W_mid_pinv: f0 [1, 1] → cos 1/√2, norm √2; f1 [0, −1] → cos −1, norm 1;
// f2 [4, −3] → cos 0, norm 5. norm_fit: 1, 2, 5.
var (
	handX    = []float32{1, 0, 2, 1, 0, 0.5, 0, 0} // (4, 2): with the transcoder below, acts are x0, x1
	handWIn  = []float32{1, 0, -1, 0, 1, 1}
	handFit  = &midcoder.Params{F: 3, C: 2, WMid: []float32{1, 0, 0, 2, 3, 4}, BMid: []float32{0, -0.5}}
	handPinv = &midcoder.Params{F: 3, C: 2, WMid: []float32{1, 1, 0, -1, 4, -3}, BMid: []float32{0, 0}}
)

func handMLP() *midcoder.MLP {
	return &midcoder.MLP{C: 2, N: 3, WIn: handWIn, BIn: []float32{0, 0, 0}, WOut: make([]float32, 6), BOut: make([]float32, 2)}
}

// handTranscoder encodes x into (relu x0, relu x1, relu(−x0 − x1)).
func handTranscoder() *transcoder.Transcoder {
	return &transcoder.Transcoder{DIn: 2, DOut: 2, DSAE: 3, Layer: 0,
		WEnc: []float32{1, 0, -1, 0, 1, -1}, BEnc: make([]float32, 3),
		WDec: make([]float32, 6), BDec: make([]float32, 2), BDecOut: make([]float32, 2)}
}

func handCache(t *testing.T, withActs bool) *actcache.Cache {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	man := actcache.Manifest{Layer: 0, DModel: 2, ContextLength: 2, NSequences: 2, DType: "float32",
		Hooks: actcache.HookNames(0), SequencesPerShard: 1, Data: actcache.Data{Kind: "test"}, WithActs: withActs}
	if withActs {
		man.DSAE = 3
	}
	w, err := actcache.Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	acts := []*transcoder.Acts{
		{Indptr: []int64{0, 1, 3}, Indices: []int32{0, 0, 1}, Values: []float32{1, 2, 1}},
		{Indptr: []int64{0, 1, 1}, Indices: []int32{1}, Values: []float32{0.5}},
	}
	for i := 0; i < 2; i++ {
		var a *transcoder.Acts
		if withActs {
			a = acts[i]
		}
		if err := w.WriteShard(i, []int32{1, 2}, handX[i*4:(i+1)*4], make([]float32, 4), nil, a); err != nil {
			t.Fatal(err)
		}
	}
	return finishCache(t, w, dir)
}

// finishCache finishes the cache w writes into dir and opens it.
func finishCache(t *testing.T, w *actcache.Writer, dir string) *actcache.Cache {
	t.Helper()
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= 1e-12
}

func TestReportHandComputed(t *testing.T) {
	want := []FeatureStat{
		{Feature: 0, Count: 2, Freq: 0.5, Consistency: 1, CosFitPinv: 1 / math.Sqrt2, NormFit: 1, NormPinv: math.Sqrt2,
			Neurons: []int32{0, 2}, Drive: []float32{1, -1}, PActive: []float64{1, 0}},
		{Feature: 1, Count: 2, Freq: 0.5, Consistency: 0.5, CosFitPinv: -1, NormFit: 2, NormPinv: 1,
			Neurons: []int32{1, 2}, Drive: []float32{2, 2}, PActive: []float64{1, 0.5}},
		{Feature: 2, Count: 0, Freq: 0, Consistency: math.NaN(), CosFitPinv: 0, NormFit: 5, NormPinv: 5,
			Neurons: []int32{1, 0}, Drive: []float32{4, 3}, PActive: []float64{math.NaN(), math.NaN()}},
	}
	for _, stored := range []bool{true, false} {
		in := ReportInput{Cache: handCache(t, stored), MLP: handMLP(), Fit: handFit, Pinv: handPinv, TopK: 2}
		if !stored {
			in.TC = handTranscoder()
		}
		res, err := Report(context.Background(), in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Features) != 3 {
			t.Fatalf("stored %v: %d rows, want 3", stored, len(res.Features))
		}
		for i, w := range want {
			g := res.Features[i]
			if g.Feature != w.Feature || g.Count != w.Count || !near(g.Freq, w.Freq) || !near(g.Consistency, w.Consistency) ||
				!near(g.CosFitPinv, w.CosFitPinv) || !near(g.NormFit, w.NormFit) || !near(g.NormPinv, w.NormPinv) ||
				!slices.Equal(g.Neurons, w.Neurons) || !slices.Equal(g.Drive, w.Drive) ||
				!slices.EqualFunc(g.PActive, w.PActive, near) {
				t.Errorf("stored acts %v, feature %d:\n got %+v\nwant %+v", stored, i, g, w)
			}
		}
		s := res.Summary
		if s.Tokens != 4 || s.FeaturesLive != 2 || s.FeaturesInTable != 3 || s.TopK != 2 || !near(s.ConsistencyMean, 0.75) ||
			// The means over live features: feature 2 never fires, its
			// cosine 0 and norm 5 are left out.
			!near(s.FreqMean, 0.5) || !near(s.CosMean, (1/math.Sqrt2-1)/2) || !near(s.NormFitMean, 3.0/2) ||
			!near(s.CosMedian, (1/math.Sqrt2-1)/2) || !near(s.NormPinvMean, (math.Sqrt2+1)/2) {
			t.Errorf("stored acts %v: summary %+v", stored, s)
		}
	}
}

// A feature the fit never trained (the midcoder file's untrained list)
// keeps its row in the table, flagged, but leaves the means and the
// rankings: here feature 1, so the means are feature 0's alone.
func TestReportUntrainedFeature(t *testing.T) {
	in := ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: handFit, Pinv: handPinv, TopK: 2, FitUntrained: []int{1}}
	res, err := Report(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Features; !f[0].FitTrained || f[1].FitTrained || !f[2].FitTrained || f[1].Count != 2 || !near(f[1].Consistency, 0.5) {
		t.Errorf("features %+v", f)
	}
	s := res.Summary
	if s.FeaturesLiveUntrained != 1 || s.FitUntrained == nil || *s.FitUntrained != 1 || s.FeaturesRanked != 1 || s.FeaturesLive != 2 || !near(s.FreqMean, 0.5) || !near(s.ConsistencyMean, 1) ||
		!near(s.CosMean, 1/math.Sqrt2) || !near(s.NormFitMean, 1) {
		t.Errorf("summary %+v", s)
	}
	if ex := rankExtremes(res.Features, extremeRows, 1); len(ex.low) != 1 || ex.low[0].Feature != 0 {
		t.Errorf("ranked %+v, want feature 0 alone", ex.low)
	}
}

func TestReportFeaturesSampleAndNoPinv(t *testing.T) {
	res, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: handFit, TopK: 5, Features: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Features) != 1 || res.Features[0].Feature != 0 {
		t.Fatalf("--features 1 kept %+v, want feature 0 alone", res.Features)
	}
	g := res.Features[0]
	// k clamps to N = 3: neurons 0, 2, 1 (|drive| 1, 1, 0); P(n1 | f0) = 1/2.
	if !slices.Equal(g.Neurons, []int32{0, 2, 1}) || !slices.EqualFunc(g.PActive, []float64{1, 0, 0.5}, near) || !near(g.Consistency, 2.0/3) {
		t.Errorf("got %+v", g)
	}
	if !math.IsNaN(g.CosFitPinv) || !math.IsNaN(g.NormPinv) || res.Summary.HasPinv {
		t.Errorf("without pinv: cos %v, norm_pinv %v, has_pinv %v", g.CosFitPinv, g.NormPinv, res.Summary.HasPinv)
	}
	if !strings.Contains(res.Summary.Selection, "first 1 live features") || !strings.Contains(res.Summary.Selection, "top 3 neurons") {
		t.Errorf("selection %q does not say which features and neurons", res.Summary.Selection)
	}
}

func TestReportBadInput(t *testing.T) {
	want := MidcoderWant{Layer: 0, DModel: 2, DSAE: 3}
	if err := CheckMidcoderMeta("m.safetensors", midcoder.Meta{Layer: 3, DModel: 2, DSAE: 3}, want); err == nil || !strings.Contains(err.Error(), "layer 3") {
		t.Errorf("layer mismatch: %v", err)
	}
	if err := CheckMidcoderMeta("m.safetensors", midcoder.Meta{Layer: 0, DModel: 2, DSAE: 4}, want); err == nil || !strings.Contains(err.Error(), "4 features") {
		t.Errorf("width mismatch: %v", err)
	}
	other := midcoder.Meta{Layer: 0, DModel: 2, DSAE: 3, Provenance: midcoder.Provenance{Model: provenance.File{SHA256: "aa", Size: 1}}}
	if err := CheckMidcoderMeta("m.safetensors", other, MidcoderWant{Layer: 0, DModel: 2, DSAE: 3, Model: provenance.File{SHA256: "bb", Size: 1}}); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("CheckMidcoderMeta(other model) = %v", err)
	}
	// Same width, another transcoder: its rows are other features' rows.
	otherTC := midcoder.Meta{Layer: 0, DModel: 2, DSAE: 3, Method: "fit", Provenance: midcoder.Provenance{Transcoder: provenance.File{Path: "a.pt", SHA256: "aa", Size: 1}}}
	if err := CheckMidcoderMeta("m.safetensors", otherTC, MidcoderWant{Layer: 0, DModel: 2, DSAE: 3, Transcoder: provenance.File{Path: "b.pt", SHA256: "bb", Size: 1}}); err == nil || !strings.Contains(err.Error(), "another transcoder") || !strings.Contains(err.Error(), "a.pt") {
		t.Errorf("CheckMidcoderMeta(other transcoder) = %v", err)
	}
	if err := CheckMidcoderMeta("m.safetensors", otherTC, MidcoderWant{Layer: 0, DModel: 2, DSAE: 3, Transcoder: provenance.File{Path: "c.pt", SHA256: "aa", Size: 1}}); err != nil {
		t.Errorf("the same transcoder under another path: %v", err)
	}
	// A fit given as --pinv: it would compare the fit with itself.
	if err := CheckMidcoderMeta("m.safetensors", otherTC, MidcoderWant{Layer: 0, DModel: 2, DSAE: 3, Method: "pinv", Flag: "--pinv"}); err == nil || !strings.Contains(err.Error(), "--pinv m.safetensors records method \"fit\"") {
		t.Errorf("a fit as --pinv: %v", err)
	}
	// DSAE 0 (not known yet, report --layers' check before any work): the
	// file's own width is not compared.
	if err := CheckMidcoderMeta("m.safetensors", midcoder.Meta{Layer: 0, DModel: 2, DSAE: 7}, MidcoderWant{Layer: 0, DModel: 2}); err != nil {
		t.Errorf("unknown width: %v", err)
	}
	if err := CheckMidcoderMeta("m.safetensors", midcoder.Meta{Layer: 0, DModel: 2, DSAE: 3}, want); err != nil {
		t.Error(err)
	}
	c := handCache(t, false)
	if _, err := Report(context.Background(), ReportInput{Cache: c, MLP: handMLP(), Fit: handFit, TopK: 2}, nil); err == nil || !strings.Contains(err.Error(), "transcoder") {
		t.Errorf("no acts and no transcoder: %v", err)
	}
	wide := &midcoder.Params{F: 4, C: 2, WMid: make([]float32, 8), BMid: make([]float32, 2)}
	if _, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: wide, TopK: 2}, nil); err == nil {
		t.Error("a midcoder of 4 features on a cache of 3: no error")
	}
	if _, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: handFit, TopK: 0}, nil); err == nil {
		t.Error("--top-k 0: no error")
	}
	// An empty cache cannot be opened.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, actcache.ManifestName), []byte(`{"format":"ctxdep-activation-cache","version":1,"complete":true,"layer":0,"d_model":2,"context_length":2,"n_sequences":0,"n_tokens":0,"dtype":"float32","shards":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := actcache.Open(empty); err == nil {
		t.Error("empty cache opened")
	}
}

func TestWriteReport(t *testing.T) {
	// A W_out that is not zero, so that the effects are defined (the
	// gating statistics read only W_in).
	mlp := handMLP()
	mlp.WOut = []float32{1, 0, 0, 1, 1, 1}
	res, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: mlp, Fit: handFit, Pinv: handPinv, TopK: 2, Effect: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hist := filepath.Join(dir, "history.csv")
	os.WriteFile(hist, []byte("epoch,loss,loss_norm,lr\n1,0.5,0.25,0.001\n2,0.25,0.125,0.0005\n"), 0o644)
	out := filepath.Join(dir, "report")
	r, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors", PinvFile: "pinv.safetensors", HistoryPath: hist})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ReportCSV, ReportSafetensors, ReportSummary, ReportMarkdown, ReportHTML, plotConsistency, plotScatter, plotCosine, plotLoss, plotEffect, plotEffectScatter} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if len(r.Omitted) != 0 {
		t.Errorf("omitted %v", r.Omitted)
	}
	page, _ := os.ReadFile(filepath.Join(out, ReportHTML))
	for _, d := range ReportDefinitions {
		if !strings.Contains(string(page), d.Name) {
			t.Errorf("index.html lacks the definition of %s", d.Name)
		}
	}
	for _, s := range []string{"mean over f", "|2·P(active | f) − 1|", "data:image/png;base64,", "all 3 features"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("index.html lacks %q", s)
		}
	}
	if strings.Contains(string(page), "src=\"consistency") {
		t.Error("index.html links a PNG file instead of embedding it")
	}
	md, _ := os.ReadFile(filepath.Join(out, ReportMarkdown))
	checkMarkdownTables(t, ReportMarkdown, string(md))
	if !strings.Contains(string(md), "](consistency_hist.png)") || !strings.Contains(string(md), "consistency**:") {
		t.Errorf("index.md:\n%s", md)
	}
	// The CSV holds the hand-computed values.
	f, _ := os.Open(filepath.Join(out, ReportCSV))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	// Feature 1 fired twice, its neurons on 2/2 and 1/2 times: Wilson
	// intervals [0.342, 1] and [0.095, 0.905] bound |2p − 1| to [0, 1] and
	// [0, 0.811], so its consistency interval is [0, 0.905].
	if err != nil || len(rows) != 4 || strings.Join(rows[0], ",") != "feature,count,freq,consistency,consistency_lo,consistency_hi,cos_fit_pinv,norm_fit,norm_pinv,effect_consistency,cos_effect_dec,cos_effect_pinv,mean_effect_norm,fit_trained,first_position_frac" ||
		// Features 0 and 1 each fire once at a sequence's position 0 (of
		// their 2 firings); feature 2 never fires.
		rows[1][14] != "0.5" || rows[2][14] != "0.5" || rows[3][14] != "NaN" ||
		strings.Join(append(rows[2][:5:5], rows[2][6:9]...), ",") != "1,2,0.5,0.5,0,-1,2,1" || rows[3][9] != "NaN" || !strings.HasPrefix(rows[2][5], "0.905") || rows[3][3] != "NaN" || rows[3][1] != "0" {
		t.Errorf("features.csv: %v %v", rows, err)
	}
	// The safetensors table has the same columns.
	st, err := safetensors.Open(filepath.Join(out, ReportSafetensors))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cons, err := st.Float32("consistency")
	if err != nil || cons[0] != 1 || cons[1] != 0.5 || !math.IsNaN(float64(cons[2])) {
		t.Errorf("consistency tensor %v %v", cons, err)
	}
	var sum Summary
	b, _ := os.ReadFile(filepath.Join(out, ReportSummary))
	if err := json.Unmarshal(b, &sum); err != nil || sum.FeaturesLive != 2 || sum.Tokens != 4 {
		t.Errorf("summary.json %s: %v", b, err)
	}

	// A malformed history omits the loss plot and says why.
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("nonsense\n"), 0o644)
	out2 := filepath.Join(dir, "report2")
	r, err = WriteReport(out2, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors", HistoryPath: bad})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Omitted) != 2 {
		t.Errorf("omitted %v, want the cosine histogram (no pinv) and the loss curves", r.Omitted)
	}
	md, _ = os.ReadFile(filepath.Join(out2, ReportMarkdown))
	if !strings.Contains(string(md), "loss curves: ") || !strings.Contains(string(md), "header") {
		t.Errorf("index.md does not say why the loss curves are missing:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(out2, plotLoss)); err == nil {
		t.Error("loss plot written from a malformed history")
	}
}

// Pages go to the ranking tables' features, then the other ranked ones,
// then the other live trained ones, then the untrained ones. Features
// 5..60 are ranked (56, more than the tables' 2 × extremeRows rows), 3
// and 4 fired too rarely, 1 and 2 were never trained, 0 never fires.
func TestPagedFeatures(t *testing.T) {
	var fs []FeatureStat
	for i := range 61 {
		st := FeatureStat{Feature: i, Count: 100, FitTrained: true, Consistency: float64(i%10) / 10}
		switch {
		case i == 0:
			st.Count = 0
		case i < 3:
			st.FitTrained = false
		case i < 5:
			st.Count = 3
		}
		fs = append(fs, st)
	}
	ranked := rankExtremes(fs, extremeRows, 20)
	tables := map[int]bool{}
	for _, st := range append(ranked.low, ranked.high...) {
		tables[st.Feature] = true
	}
	var others []int // ranked, not in the tables
	for i := 5; i <= 60; i++ {
		if !tables[i] {
			others = append(others, i)
		}
	}
	if len(tables) != 2*extremeRows || len(others) != 56-2*extremeRows {
		t.Fatalf("%d features in the tables, %d other ranked ones", len(tables), len(others))
	}
	for _, c := range []struct {
		extra int
		want  []int // the pages beyond the tables'
	}{
		{len(others) - 1, others[:len(others)-1]},
		{len(others) + 1, append([]int{3}, others...)},
		{len(others) + 3, append([]int{1, 3, 4}, others...)},
	} {
		paged := pagedFeatures(fs, 20, len(tables)+c.extra)
		var rest []int
		for f := range paged {
			if !tables[f] {
				rest = append(rest, f)
			}
		}
		slices.Sort(rest)
		want := slices.Sorted(slices.Values(c.want))
		if len(paged) != len(tables)+c.extra || !slices.Equal(rest, want) {
			t.Errorf("budget %d past the tables: %v, want %v", c.extra, rest, want)
		}
	}
	if all := pagedFeatures(fs, 20, 1000); len(all) != 60 || all[0] {
		t.Errorf("an ample budget pages %d features (dead feature 0: %v), want the 60 live ones", len(all), all[0])
	}
}

// A feature that fires mostly at position 0 (one context, repeated) is not
// ranked, however often it fires; at half its firings it still is.
func TestRankedFirstPosition(t *testing.T) {
	for _, c := range []struct {
		frac float64
		want bool
	}{{0, true}, {0.5, true}, {0.51, false}, {1, false}} {
		st := FeatureStat{Count: 100, FitTrained: true, FirstPositionFrac: c.frac}
		if got := st.Ranked(20); got != c.want {
			t.Errorf("first_position_frac %g: ranked %v, want %v", c.frac, got, c.want)
		}
	}
	if st := (FeatureStat{Count: 100, FitTrained: false}); st.Ranked(20) {
		t.Error("an untrained feature is ranked")
	}
	if st := (FeatureStat{Count: 19, FitTrained: true}); st.Ranked(20) {
		t.Error("a feature below --min-count is ranked")
	}
}

// first_position_frac counts the firings at position 0 of each sequence,
// on a shard of three sequences of 3 tokens that the report reads as one
// batch: feature 0 fires only at position 0 (frac 1), feature 1 only past
// it (frac 0), feature 2 at positions 0 and 2 of one sequence (frac 1/2).
// Ranked at --min-count 1: features 1 and 2; feature 0 is left out of the
// rankings for its position, and counted as such. Also, with --features 1
// (a table of feature 0 alone) the untrained feature 2 still counts as a
// live untrained one, and a midcoder without the list reads as unknown.
func TestReportFirstPosition(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	man := actcache.Manifest{Layer: 0, DModel: 2, ContextLength: 3, NSequences: 3, DType: "float32", DSAE: 3, WithActs: true,
		Hooks: actcache.HookNames(0), SequencesPerShard: 3, Data: actcache.Data{Kind: "test"}}
	w, err := actcache.Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	acts := csrOf([]map[int32]float32{
		{0: 1}, {1: 1}, {1: 2}, // sequence 0
		{0: 2, 2: 1}, {}, {2: 1}, // sequence 1
		{0: 1}, {1: 1}, {}, // sequence 2
	})
	if err := w.WriteShard(0, make([]int32, 9), make([]float32, 18), make([]float32, 18), nil, acts); err != nil {
		t.Fatal(err)
	}
	c := finishCache(t, w, dir)
	res, err := Report(context.Background(), ReportInput{Cache: c, MLP: handMLP(), Fit: handFit, TopK: 2, MinCount: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range []float64{1, 0, 0.5} {
		if got := res.Features[f].FirstPositionFrac; got != want {
			t.Errorf("feature %d: first_position_frac %g, want %g", f, got, want)
		}
	}
	if s := res.Summary; s.FeaturesRanked != 2 || s.FeaturesFirstPosition != 1 || s.FitUntrained != nil {
		t.Errorf("ranked %d, left out for position 0 %d, fit_untrained %v; want 2, 1, unknown", s.FeaturesRanked, s.FeaturesFirstPosition, s.FitUntrained)
	}
	if ex := rankExtremes(res.Features, extremeRows, 1); len(ex.low) != 2 || slices.ContainsFunc(ex.low, func(st FeatureStat) bool { return st.Feature == 0 }) {
		t.Errorf("ranked %+v: want features 1 and 2", ex.low)
	}
	// --skip-first-position: position 0 counts nowhere. Feature 0 no
	// longer fires; features 1 and 2 fire 3 and 1 times in 6 tokens.
	res, err = Report(context.Background(), ReportInput{Cache: c, MLP: handMLP(), Fit: handFit, TopK: 2, MinCount: 1, SkipFirstPosition: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f, s := res.Features, res.Summary; s.Tokens != 6 || !s.SkipFirstPosition || f[0].Count != 0 || f[1].Count != 3 || f[2].Count != 1 ||
		!near(f[1].Freq, 0.5) || f[1].FirstPositionFrac != 0 || f[2].FirstPositionFrac != 0 || s.FeaturesLive != 2 {
		t.Errorf("skipping position 0: %d tokens, counts %d %d %d, freq %g, live %d", s.Tokens, f[0].Count, f[1].Count, f[2].Count, f[1].Freq, s.FeaturesLive)
	}
	res, err = Report(context.Background(), ReportInput{Cache: c, MLP: handMLP(), Fit: handFit, TopK: 2, MinCount: 1, Features: 1, FitUntrained: []int{2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Summary; len(res.Features) != 1 || s.FitUntrained == nil || *s.FitUntrained != 1 || s.FeaturesLiveUntrained != 1 {
		t.Errorf("--features 1: %d rows, fit_untrained %v, live untrained %d; want 1 row, 1, 1", len(res.Features), s.FitUntrained, s.FeaturesLiveUntrained)
	}
}

// Consistency values that are exactly 1/2 or 9/10 come out exactly, so the
// summary's "< 0.5" and "> 0.9" fractions count them on the right side.
// The first case is from a real report (the demo's feature 31 at --top-k
// 4): count 21, neurons on 19, 14, 9 and 18 times: (17+7+3+15)/(21·4) = 1/2
// exactly, where the mean of the four rounded |2p − 1| is
// 0.49999999999999994. The values are worked by hand.
func TestConsistencyExactTies(t *testing.T) {
	for _, c := range []struct {
		on    []int64
		count int64
		want  float64
	}{
		{[]int64{19, 14, 9, 18}, 21, 0.5},
		{[]int64{10, 1}, 10, 0.9}, // (10 + 8) / 20
		{[]int64{1, 2, 0}, 3, 5.0 / 9},
		{[]int64{7, 0}, 7, 1},
		{[]int64{5}, 10, 0},
	} {
		if got := consistency(c.on, c.count); got != c.want {
			t.Errorf("consistency(%v, %d) = %v, want %v", c.on, c.count, got, c.want)
		}
	}
	// The naive mean of rounded terms misses the first case.
	var naive float64
	for _, o := range []float64{19, 14, 9, 18} {
		naive += math.Abs(2*o/21 - 1)
	}
	if naive/4 == 0.5 {
		t.Errorf("the naive mean is exact here too (%v): the first case proves nothing", naive/4)
	}
}
