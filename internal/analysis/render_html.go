package analysis

import (
	"bytes"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ctxdep/ctxdep/internal/bpe"
)

// The HTML pages, through html/template: index.html and, for the features
// in res.Pages, features/NNNNN.html (FeaturePage). Both are self-contained:
// inline CSS, a few lines of inline JavaScript that sort the tables, plots
// as data: URIs and the histograms as inline SVG; nothing is fetched.

//go:embed templates/*.tmpl
var templateFS embed.FS

var pageTemplates = template.Must(template.New("").ParseFS(templateFS, "templates/*.tmpl"))

// FeaturesDir is the directory of the feature pages inside a report.
const FeaturesDir = "features"

// FeaturePage is feature f's page, relative to the report directory.
func FeaturePage(f int) string { return fmt.Sprintf("%s/%05d.html", FeaturesDir, f) }

// tokenizer decodes the cache's token ids for display: GPT-2's, loaded once.
var tokenizer = sync.OnceValues(bpe.GPT2)

// tokenText returns the text of one token id ("⟨id N⟩" when it cannot be
// decoded).
func tokenText(id int32) string {
	if t, err := tokenizer(); err == nil {
		if s, err := t.Decode([]int32{id}); err == nil {
			return s
		}
	}
	return fmt.Sprintf("⟨id %d⟩", id)
}

// visible shows a token's whitespace and control characters: newlines as
// ↵, tabs as →, other C0 controls and DEL as their Unicode control
// pictures (U+2400…).
func visible(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return '↵'
		case r == '\t':
			return '→'
		case r < 0x20:
			return 0x2400 + r
		case r == 0x7f:
			return '␡'
		}
		return r
	}, s)
}

type footerView struct {
	Version string
	Inputs  []inputView
	Flags   []flagView
}

type inputView struct {
	Role, Path, SHA256, Short string
	Size                      int64
}

type flagView struct{ Name, Value string }

func footer(p *Provenance) footerView {
	if p == nil {
		return footerView{Version: "(version not recorded)"}
	}
	fv := footerView{Version: p.CtxdepVersion}
	for _, in := range p.Inputs {
		fv.Inputs = append(fv.Inputs, inputView{Role: in.Role, Path: in.Path, SHA256: in.SHA256, Short: shortHash(in.SHA256), Size: in.Size})
	}
	names := make([]string, 0, len(p.Flags))
	for n := range p.Flags {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fv.Flags = append(fv.Flags, flagView{n, p.Flags[n]})
	}
	return fv
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

type tokView struct {
	Text, Title string
	Style       template.CSS
	Hit         bool
}

type exView struct {
	Rank, Row, Pos int
	Act, Quantile  string
	Tokens         []tokView
}

type exTable struct {
	Quantile bool
	Rows     []exView
}

// shade is the background of a token of activation a, the feature's
// largest being top.
func shade(a, top float32) template.CSS {
	if !(a > 0) || !(top > 0) {
		return ""
	}
	alpha := min(1, float64(a/top))
	return template.CSS(fmt.Sprintf("background:rgba(255,140,0,%.3f)", 0.08+0.72*alpha))
}

func tokens(e *Example, top float32) []tokView {
	tv := make([]tokView, len(e.Tokens))
	for i, id := range e.Tokens {
		s := tokenText(id)
		tv[i] = tokView{Text: visible(s), Style: shade(e.Acts[i], top), Hit: i == e.Index(),
			Title: fmt.Sprintf("%q · id %d · act %.4g", s, id, e.Acts[i])}
	}
	return tv
}

// exRows lists es for a page, numbered from 0 in the list (the neuron
// examples' ranks in examples.jsonl run on across a feature's neurons).
func exRows(es []Example, top float32, quantile bool) exTable {
	t := exTable{Quantile: quantile}
	for i := range es {
		e := &es[i]
		v := exView{Rank: i, Row: e.Row, Pos: e.Pos, Act: fmt.Sprintf("%.4g", e.Act), Tokens: tokens(e, top)}
		if quantile {
			v.Quantile = fmt.Sprintf("%.0f%%", 100*e.Quantile)
		}
		t.Rows = append(t.Rows, v)
	}
	return t
}

func fmt4(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return fmt.Sprintf("%.4f", v)
}

func interval(lo, hi float64) string {
	if math.IsNaN(lo) {
		return "–"
	}
	return fmt.Sprintf("[%.3f, %.3f]", lo, hi)
}

// dataV is a sort key for a data-v attribute ("NaN" sorts last).
func dataV(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }

type rankRow struct {
	Feature                                                                   int
	Link                                                                      string
	Count                                                                     int64
	Freq, Cons, Lo, Cos, NormFit, NormPinv                                    string
	FreqText, ConsText, Interval, CosText, NormFitText, NormPinvText, Neurons string
}

type rankTable struct {
	ID, Title, Caption string
	Rows               []rankRow
}

type plotView struct {
	Title, Caption string
	Src            template.URL // a data: URI of the PNG
}

// plotViews are plots as pages embed them.
func plotViews(plots []plotInfo) []plotView {
	var out []plotView
	for _, p := range plots {
		out = append(out, plotView{Title: p.title, Caption: p.caption,
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.png))})
	}
	return out
}

type pageLink struct {
	Feature        int
	Link           string
	Count          int64
	Cons, ConsText string
	MaxAct         string
	MaxActText     string
	Top            []tokView
}

type indexView struct {
	Title, CacheDir, MidcoderFile, PinvFile, Selection string
	Files                                              []string
	Summary                                            [][2]string
	Tables                                             []rankTable
	MinCount                                           int
	Pages                                              []pageLink
	PagesNote                                          string
	Definitions                                        []struct{ Name, Text string }
	Plots                                              []plotView
	Omitted                                            []string
	Footer                                             footerView
}

// rankingTables are the index's two rankings, with captions.
func rankingTables(res *ReportResult, ex extremeTables, paged map[int]bool) []rankTable {
	s := res.Summary
	capt := fmt.Sprintf("Only features that fired at least %d times (--min-count %d), that the fit trained and that fire at position 0 at most half the time: %d of the table's %d features; up to %d rows. The interval is consistency's 95%% interval (see definitions). Click a column head to sort.",
		s.MinCount, s.MinCount, s.FeaturesRanked, s.FeaturesInTable, extremeRows)
	var out []rankTable
	for _, t := range []struct {
		id, title string
		rows      []FeatureStat
	}{{"low", "Most context-dependent features (lowest consistency)", ex.low}, {"high", "Most context-independent features (highest consistency)", ex.high}} {
		rt := rankTable{ID: t.id, Title: t.title, Caption: capt}
		for _, st := range t.rows {
			r := rankRow{Feature: st.Feature, Count: st.Count,
				Freq: dataV(st.Freq), Cons: dataV(st.Consistency), Lo: dataV(st.ConsistencyLo), Cos: dataV(st.CosFitPinv), NormFit: dataV(st.NormFit), NormPinv: dataV(st.NormPinv),
				FreqText: fmt.Sprintf("%.4g", st.Freq), ConsText: fmt4(st.Consistency), Interval: interval(st.ConsistencyLo, st.ConsistencyHi),
				CosText: fmt4(st.CosFitPinv), NormFitText: fmt.Sprintf("%.4g", st.NormFit), NormPinvText: fmt.Sprintf("%.4g", st.NormPinv),
				Neurons: neuronList(st)}
			if paged[st.Feature] {
				r.Link = FeaturePage(st.Feature)
			}
			rt.Rows = append(rt.Rows, r)
		}
		out = append(out, rt)
	}
	return out
}

func neuronList(st FeatureStat) string {
	var nb []string
	for j, n := range st.Neurons {
		nb = append(nb, fmt.Sprintf("%d (%.2f)", n, st.PActive[j]))
	}
	return strings.Join(nb, ", ")
}

// indexHTML renders index.html.
func indexHTML(in RenderInput, plots []plotInfo, omitted []string, ex extremeTables, files []string) ([]byte, error) {
	res := in.Result
	v := indexView{Title: fmt.Sprintf("Context-dependence report, layer %d", res.Summary.Layer), CacheDir: in.CacheDir,
		MidcoderFile: in.MidcoderFile, PinvFile: in.PinvFile, Selection: res.Summary.Selection, Files: files,
		Summary: summaryRows(res.Summary), MinCount: res.Summary.MinCount, Definitions: ReportDefinitions,
		Omitted: omitted, Footer: footer(res.Summary.Provenance)}
	paged := map[int]bool{}
	for _, f := range res.Pages {
		paged[f] = true
	}
	v.Tables = rankingTables(res, ex, paged)
	v.Plots = plotViews(plots)
	stats := statsByFeature(res)
	for _, db := range res.Dashboards {
		if !paged[db.Feature] {
			continue
		}
		st := stats[db.Feature]
		pl := pageLink{Feature: db.Feature, Link: FeaturePage(db.Feature), Count: st.Count, Cons: dataV(st.Consistency), ConsText: fmt4(st.Consistency),
			MaxAct: dataV(float64(db.MaxAct)), MaxActText: fmt.Sprintf("%.4g", db.MaxAct)}
		if len(db.Top) > 0 {
			pl.Top = tokens(&db.Top[0], db.MaxAct)
		}
		v.Pages = append(v.Pages, pl)
	}
	if len(v.Pages) > 0 {
		v.PagesNote = fmt.Sprintf("%d features have a page (--pages bounds them): the ranked features above first, then the table's other features that fire, by index. Every feature that fires has its examples in %s.", len(v.Pages), ReportExamples)
	}
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, "index.tmpl", v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func statsByFeature(res *ReportResult) map[int]*FeatureStat {
	m := make(map[int]*FeatureStat, len(res.Features))
	for i := range res.Features {
		m[res.Features[i].Feature] = &res.Features[i]
	}
	return m
}

type neuronView struct {
	Neuron                     int32
	Drive, DriveText, P, PText string
	Interval, Split            string
	On, Off                    exTable
}

type outTable struct {
	Title string
	Rows  []struct{ Text, Logit string }
}

type featureView struct {
	Title                                 string
	Neuronpedia                           string
	Count, Tokens                         int64
	Freq, MeanAct, MaxAct, Cons, Interval string
	Cos, NormFit, NormPinv                string
	Inputs                                *inputsView
	Effect                                bool // the effect statistics were computed
	EffectCons, CosEffectDec              string
	CosEffectPinv, MeanEffectNorm         string
	Few                                   bool
	Untrained                             bool // the fit never trained the feature's vector
	FirstPos                              string
	FirstPosUnranked                      bool // left out of the rankings for it
	MinCount                              int
	AllNeurons, Neurons                   []neuronView
	Top, Quantiles                        exTable
	Reservoir                             int
	Hist                                  template.HTML
	Output                                []outTable
	OutputNote                            string
	Footer                                footerView
}

// featureHTML renders feature db's page; st is its table row.
func featureHTML(res *ReportResult, st *FeatureStat, db *Dashboard) ([]byte, error) {
	s := res.Summary
	v := featureView{Title: fmt.Sprintf("Feature %d, layer %d", db.Feature, s.Layer), Count: st.Count, Tokens: s.Tokens,
		Freq: fmt.Sprintf("%.4g", st.Freq), MeanAct: fmt.Sprintf("%.4g", db.MeanAct), MaxAct: fmt.Sprintf("%.4g", db.MaxAct),
		Cons: fmt4(st.Consistency), Interval: interval(st.ConsistencyLo, st.ConsistencyHi), Cos: fmt4(st.CosFitPinv),
		NormFit: fmt.Sprintf("%.4g", st.NormFit), NormPinv: fmt.Sprintf("%.4g", st.NormPinv),
		Effect: s.HasEffect, EffectCons: fmt4(st.EffectConsistency), CosEffectDec: fmt4(st.CosEffectDec),
		CosEffectPinv: fmt4(st.CosEffectPinv), MeanEffectNorm: fmt.Sprintf("%.4g", st.MeanEffectNorm),
		Few: st.Count < int64(s.MinCount), Untrained: !st.FitTrained, MinCount: s.MinCount,
		FirstPos: fmt.Sprintf("%.3f", st.FirstPositionFrac), FirstPosUnranked: st.FirstPositionFrac > FirstPositionRankable, Reservoir: reservoirSize,
		Top: exRows(db.Top, db.MaxAct, false), Quantiles: exRows(db.Quantiles, db.MaxAct, true),
		Hist: histSVG(db), Footer: footer(s.Provenance)}
	if res.NeuronpediaBase != "" {
		v.Neuronpedia = res.NeuronpediaBase + strconv.Itoa(db.Feature)
	}
	if t := res.Connections; t != nil {
		v.Inputs = newInputsView(t, db.Feature)
	}
	for j, n := range st.Neurons {
		lo, hi := wilson(int64(math.Round(st.PActive[j]*float64(st.Count))), st.Count)
		non := int64(math.Round(st.PActive[j] * float64(st.Count)))
		nv := neuronView{Neuron: n, Drive: dataV(float64(st.Drive[j])), DriveText: fmt.Sprintf("%.4g", st.Drive[j]),
			P: dataV(st.PActive[j]), PText: fmt.Sprintf("%.3f", st.PActive[j]), Interval: interval(lo, hi),
			Split: fmt.Sprintf("%d / %d", non, st.Count-non)}
		if j < len(db.Neurons) {
			ne := db.Neurons[j]
			nv.Interval, nv.Split = interval(ne.Lo, ne.Hi), fmt.Sprintf("%d / %d", ne.NOn, ne.NOff)
			nv.On, nv.Off = exRows(ne.On, db.MaxAct, false), exRows(ne.Off, db.MaxAct, false)
			v.Neurons = append(v.Neurons, nv)
		}
		v.AllNeurons = append(v.AllNeurons, nv)
	}
	if o := db.Output; o == nil || (o.DecUp == nil && o.MLPUp == nil) {
		v.OutputNote = "No output-side view: the report was made without the model's unembedding."
	} else {
		add := func(title string, tl []TokenLogit) {
			if tl == nil {
				return
			}
			t := outTable{Title: title}
			for _, x := range tl {
				t.Rows = append(t.Rows, struct{ Text, Logit string }{visible(tokenText(x.Token)), fmt.Sprintf("%+.4g", x.Logit)})
			}
			v.Output = append(v.Output, t)
		}
		add("W_dec[f] @ W_U: promoted", o.DecUp)
		add("W_dec[f] @ W_U: suppressed", o.DecDown)
		add("MLP effect (midcoder): promoted", o.MLPUp)
		add("MLP effect (midcoder): suppressed", o.MLPDown)
		if o.DecUp == nil {
			v.OutputNote = "W_dec[f] @ W_U is left out: no transcoder was loaded."
		}
	}
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, "feature.tmpl", v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// histSVG draws the activation histogram as inline SVG: one bar per
// quarter-octave bin, log-scaled activations along x. It holds numbers
// only.
func histSVG(db *Dashboard) template.HTML {
	if len(db.Hist) == 0 {
		return template.HTML(`<p class="muted">no firings</p>`)
	}
	const w, h, pad = 640.0, 160.0, 30.0
	n := len(db.Hist)
	peak := slices.Max(db.Hist)
	bw := (w - 2*pad) / float64(n)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" role="img" aria-label="activation histogram">`, w, h+30)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#888"/>`, pad, h, w-pad, h)
	for i, c := range db.Hist {
		bh := (h - 10) * float64(c) / float64(peak)
		fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#4678be"><title>[%.4g, %.4g): %d</title></rect>`,
			pad+float64(i)*bw+0.5, h-bh, max(bw-1, 0.5), bh, db.HistEdges[i], db.HistEdges[i+1], c)
	}
	for _, i := range []int{0, n / 2, n} {
		fmt.Fprintf(&b, `<text x="%.2f" y="%g" font-size="11" text-anchor="middle">%.3g</text>`, pad+float64(i)*bw, h+14, db.HistEdges[i])
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">activation (quarter-octave bins, log scale); tallest bar %d firings</text></svg>`, w/2, h+28, peak)
	return template.HTML(b.String())
}

// inputsView is a feature page's strongest inputs from an earlier layer
// (`report --connections`).
type inputsView struct {
	SourceLayer, TopK int
	Spearman, Share   string
	Count             int64
	ByV, ByAbar       []inputRow
}

type inputRow struct{ Source, V, Abar string }

func newInputsView(t *ConnTable, j int) *inputsView {
	v := &inputsView{SourceLayer: t.Summary.SourceLayer, TopK: t.Summary.TopK, Count: t.Count[j],
		Spearman: fmt4(float64(t.Spearman[j])), Share: fmt4(float64(t.ShareTopV[j]))}
	rows := func(in []ConnInput) []inputRow {
		out := make([]inputRow, len(in))
		for i, c := range in {
			out[i] = inputRow{strconv.Itoa(c.Source), fmt.Sprintf("%.4g", c.V), fmt.Sprintf("%.4g", c.Abar)}
		}
		return out
	}
	byV, byAbar := t.Inputs(j)
	v.ByV, v.ByAbar = rows(byV), rows(byAbar)
	return v
}
