package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

type reportOptions struct {
	cache       string
	midcoder    string
	pinv        string
	history     string
	out         string
	topK        int
	features    int
	examples    int
	minCount    int
	pages       int
	effect      bool
	skipFirst   bool
	layers      string
	evaluate    bool
	connections []string
	flags       map[string]string // every flag set, and the report's own, for the provenance
}

func newReportCmd(g *globalOptions) *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report --cache DIR --midcoder FILE [--pinv FILE] [--history FILE] --out DIR",
		Short: "Per-feature context-dependence report: neuron gating and effect consistency, dashboards, cross-layer view",
		Long: `Streams once over the cache (memory: one shard, F × top-k counters and the
dashboards) and computes for each transcoder feature f:
  freq          fraction of cached tokens with acts_f > 0
  P(active|f)   for the --top-k neurons n that f's fitted mid vector drives most
                (largest |(W_mid[f] @ W_in)[n]|), the fraction of the tokens where
                f fires on which the midcoder's pre-activation
                (mid @ W_in + b_in)[n] > 0, mid = acts @ W_mid + b_mid
  consistency   mean over those neurons of |2·P − 1|: 1 when f switches the same
                neurons on or off every time it fires (context-independent), 0
                when they are on half the time (context-dependent)
  cos_fit_pinv  cosine between W_mid_fit[f] and W_mid_pinv[f] (with --pinv)
  norm_fit, norm_pinv  their Euclidean norms
  count         tokens on which f fires; consistency_lo/hi a 95% interval
                (each neuron's Wilson interval, |2p − 1| bounded over it, averaged)
Gating statistics cover only each feature's top-k neurons; --features N keeps
the first N features that fire on the cache (default: all features). The
most/least context-independent tables rank only features that fired at least
--min-count times, whose mid vector the fit trained (fit_trained 1: it fired in
the fit's batches) and that fire at position 0 (BOS in the notebook's rows, the same token in
every row) at most half the time (first_position_frac ≤ 0.5).

Dashboards, gathered in the same pass with fixed memory per feature (about
6.5 KB; --examples 0 turns them off): the --examples contexts of largest
activation, contexts at the quantiles of a uniform sample of firings, and for
each feature's top 3 neurons firings with the neuron on and off; an activation
histogram. Pages (features/NNNNN.html, at most --pages: the two ranking tables'
features, then the other ranked ones (count ≥ --min-count, trained by the
fit, at most half their firings at position 0), then the table's other
live features, the fit's untrained ones last, each by index) add the tokens the feature
promotes and suppresses: W_dec[f] @ W_U (when the transcoder is there) and the
midcoder's effect through the MLP. Token windows are decoded with GPT-2's
tokenizer. For the released GPT-2 small transcoders each page links to the
feature on Neuronpedia.

Writes into --out: features.csv and features.safetensors (one row per feature),
summary.json (with the provenance: ctxdep version, inputs and their SHA-256,
flags), examples.jsonl (one line per feature, kind and rank: about 10 KB per
feature that fires), PNG plots (histogram of consistency, consistency against
log10 frequency, histogram of cos(fit, pinv) with --pinv, loss curves from
--history or the history.csv next to the midcoder file, and unless
--effect=false the histogram of effect_consistency and effect_consistency
against consistency), index.md, a
self-contained index.html with the definitions of every statistic and sortable
rankings, and features/*.html. A missing or malformed history leaves out the
loss plot and index.md says why. --out is written as a whole, at the end: an
earlier report there (nothing else) is replaced, and a failed or interrupted
run leaves it as it was. With --layers the same holds for the whole set: each
layer's report in --out/layer-LL and the cross-layer pages beside them, written
once every layer is done; a set that holds other layers' reports is refused
rather than lost.

The model is needed for the layer's MLP weights and the unembedding; the
transcoder when the cache stores no acts (built without --with-acts), and
otherwise, when found, for W_dec on the feature pages.`,
		Example: `  ctxdep report --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --pinv pinv-l8.safetensors --out report-l8
  ctxdep report --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --out report-l8 --top-k 16 --features 2000
  ctxdep report --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --out report-l8 --min-count 50 --pages 2000`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			// An empty --connections (an unset variable in a script) is none.
			o.connections = slices.DeleteFunc(o.connections, func(d string) bool { return d == "" })
			o.flags = map[string]string{}
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				switch f.Name {
				case "top-k", "features", "examples", "min-count", "pages", "effect", "skip-first-position":
					o.flags[f.Name] = f.Value.String()
				case "connections": // one DIR as given (report --layers records each layer's own)
					if len(o.connections) > 0 {
						o.flags[f.Name] = strings.Join(o.connections, ", ")
					}
				default:
					if f.Changed {
						o.flags[f.Name] = f.Value.String()
					}
				}
			})
			if err := layerFlags(cmd, o.layers); err != nil {
				return err
			}
			if o.layers != "" {
				return runReportLayers(cmd.Context(), g, o)
			}
			if o.evaluate {
				return usagef("--evaluate fills the cross-layer table of report --layers; for one layer run ctxdep evaluate")
			}
			return runReport(cmd.Context(), g, o, cmd.Flags().Changed("layer"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cache, "cache", "", "activation cache to stream over")
	f.StringVar(&o.midcoder, "midcoder", "", "fitted midcoder file (from fit)")
	f.StringVar(&o.pinv, "pinv", "", "pinv-baseline midcoder file to compare mid vectors with")
	f.StringVar(&o.history, "history", "", "fit's history.csv for the loss curves (default: history.csv next to --midcoder)")
	f.StringVar(&o.out, "out", "", "output directory (never an activation cache or inside one)")
	f.IntVar(&o.topK, "top-k", 8, "neurons per feature whose gating is measured")
	f.IntVar(&o.features, "features", 0, "keep only the first N live features (0: all)")
	f.IntVar(&o.examples, "examples", analysis.DefaultExamples, fmt.Sprintf("top activating contexts per feature on its dashboard (0: no dashboards, examples.jsonl or pages; at most %d)", analysis.MaxExamples))
	f.IntVar(&o.minCount, "min-count", analysis.DefaultMinCount, "rank only features that fired at least this many times")
	f.BoolVar(&o.skipFirst, "skip-first-position", false, "leave each sequence's position 0 (BOS in the notebook's rows: the same token with\nnothing before it in every sequence) out of every statistic, examples included")
	f.BoolVar(&o.effect, "effect", true, "compute effect_consistency, cos_effect_dec and cos_effect_pinv in the same pass\n(k·N·C flops per firing feature and token: at GPT-2 small's shapes tens of times the rest\nof the pass on the CPU; with --device cuda they run on the GPU; --effect=false leaves them out)")
	f.StringVar(&o.layers, "layers", "", "report on each layer of the layer set --cache names (e.g. 2,3, 0-11 or all), with\n--midcoder and --pinv the --out DIRs of fit and pinv-baseline --layers: --out R gets\nR/layer-LL/ per layer and the cross-layer R/index.html, index.md, layers.csv and plots")
	f.StringArrayVar(&o.connections, "connections", nil, "the --out DIR of ctxdep connections into this layer: each feature page lists the\nfeature's strongest inputs from the earlier layer, by weight (V) and by data (Ā)\n(with --layers, repeat it, one per layer: each is used for the layer it goes into)")
	f.BoolVar(&o.evaluate, "evaluate", false, "with --layers, also run ctxdep evaluate per layer to fill the table's CE, NMSE and\nloss_norm columns (a forward pass of the whole model per cached token, per layer)")
	f.IntVar(&o.pages, "pages", analysis.DefaultPages, fmt.Sprintf("at most this many feature pages (the ranked features first; at most %d)", analysis.MaxPages))
	addLayersJSONFlag(cmd, g)
	return cmd
}

// loadMidcoder loads a midcoder file (evaluate's and report's) and checks
// it against what it is used with (analysis.CheckMidcoderMeta).
func loadMidcoder(file string, want analysis.MidcoderWant) (*midcoder.Params, midcoder.Meta, error) {
	meta, err := midcoder.ReadMeta(file)
	if err != nil {
		return nil, meta, err
	}
	if err := analysis.CheckMidcoderMeta(file, meta, want); err != nil {
		return nil, meta, err // before reading and hashing its tensors
	}
	return midcoder.Load(file)
}

// checkLayerMidcoder checks a midcoder file's metadata against the cache
// of layer in cache (a layer set, or one layer's cache) before any work:
// the check loadMidcoder repeats when the layer's turn comes, less the
// transcoder's width when it is not loaded yet. The midcoder's rows must
// be the features of the transcoder whose acts the cache stores, when the
// run reads them (storedActs: report), else of the transcoder the layer's
// run loads (resolved and hashed as loadTranscoder does, not loaded).
// want gives the flag and method.
func (g *globalOptions) checkLayerMidcoder(cache string, layer int, file string, want analysis.MidcoderWant, storedActs bool) error {
	c, err := actcache.OpenLayer(cache, layer)
	if err != nil {
		return err
	}
	m := c.Manifest
	want.Layer, want.DModel, want.Model = m.Layer, m.DModel, m.Model
	if storedActs && m.WithActs && m.Transcoder != nil {
		want.DSAE, want.Transcoder = m.DSAE, *m.Transcoder
	} else if want.Transcoder, err = g.layerTranscoder(cache, layer); err != nil {
		return err
	}
	meta, err := midcoder.ReadMeta(file)
	if err != nil {
		return err
	}
	return analysis.CheckMidcoderMeta(file, meta, want)
}

// layerTranscoder returns the provenance of the transcoder file that a run
// on layer of the layer set cache loads, found as loadTranscoder finds it
// (flags, environment, the cache's record) and hashed, without loading it.
func (g *globalOptions) layerTranscoder(cache string, layer int) (provenance.File, error) {
	saved := g.layer
	defer func() { g.layer = saved }()
	g.layer = layer
	if _, err := g.openCacheAt(cache, true); err != nil { // the cache's record of its transcoder
		return provenance.File{}, err
	}
	path, _, err := g.transcoderFiles(layer)
	if err != nil {
		return provenance.File{}, err
	}
	return g.hash(path)
}

// readConnTables reads the --connections tables dirs, keyed by the layer
// each goes into; two into one layer are a usage error.
func readConnTables(dirs []string) (map[int]*analysis.ConnTable, error) {
	into := map[int]*analysis.ConnTable{}
	for _, dir := range dirs {
		t, err := analysis.ReadConnections(dir)
		if err != nil {
			return nil, err
		}
		l := t.Summary.TargetLayer
		if into[l] != nil {
			return nil, usagef("--connections %s and %s both go into layer %d: give one per layer", into[l].Dir, t.Dir, l)
		}
		into[l] = t
	}
	return into, nil
}

func runReport(ctx context.Context, g *globalOptions, o *reportOptions, layerSet bool) error {
	into, err := readConnTables(o.connections)
	if err != nil {
		return err
	}
	if err := checkReportFlags(o); err != nil {
		return err
	}
	if err := analysis.CheckReportOut(o.out); err != nil {
		return outUsage(err) // before the pass over the cache
	}
	res, in, err := reportLayer(ctx, g, o, layerSet, into)
	if err != nil {
		return err
	}
	r, err := analysis.WriteReport(o.out, in)
	if err != nil {
		return err
	}
	return printReport(g, o, res, r, false)
}

// checkReportFlags refuses, as usage errors, what no report can do.
func checkReportFlags(o *reportOptions) error {
	switch {
	case o.cache == "":
		return usagef("report needs --cache DIR")
	case o.midcoder == "":
		return usagef("report needs --midcoder FILE")
	case o.out == "":
		return usagef("report needs --out DIR")
	}
	if err := analysis.CheckReportSettings(o.topK, o.features); err != nil {
		return usagef("%v", err)
	}
	if err := analysis.CheckDashboardSettings(o.examples, o.minCount, o.pages); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// reportLayer computes the report of the cache o names (its layer as
// g.layer says when layerSet), with the --connections table into holds
// for its layer (a table into another layer is an error), and returns
// what to write.
func reportLayer(ctx context.Context, g *globalOptions, o *reportOptions, layerSet bool, into map[int]*analysis.ConnTable) (*analysis.ReportResult, analysis.RenderInput, error) {
	var none analysis.RenderInput
	c, err := g.openCacheAt(o.cache, layerSet)
	if err != nil {
		return nil, none, err
	}
	man := c.Manifest
	layer := man.Layer
	conns := into[layer]
	for _, l := range slices.Sorted(maps.Keys(into)) {
		if l != layer {
			return nil, none, fmt.Errorf("--connections %s go into layer %d, the cache %s holds layer %d", into[l].Dir, l, o.cache, layer)
		}
	}
	// Check the midcoder files against the cache before loading the model.
	dSAE := man.DSAE
	var tc *transcoder.Transcoder
	var tcProv provenance.File
	if !man.WithActs {
		if tc, tcProv, _, err = g.loadTranscoder(layer, man.DModel); err != nil {
			return nil, none, fmt.Errorf("%w (the cache %s stores no acts, so the transcoder encodes its x)", err, o.cache)
		}
		dSAE = tc.DSAE
	} else if o.examples > 0 && o.pages > 0 || o.effect {
		// Optional: W_dec for the pages' output view and cos_effect_dec.
		t, p, _, err := g.loadTranscoder(layer, man.DModel)
		switch {
		case err != nil:
			g.notef("report: no W_dec @ W_U on the feature pages: %v", err)
		case !man.StoresActsOf(p):
			g.notef("report: no W_dec @ W_U on the feature pages: the transcoder %s is not the one whose acts the cache %s stores", p.Path, o.cache)
		case t.DSAE != man.DSAE || t.DOut != man.DModel:
			g.notef("report: no W_dec @ W_U on the feature pages: the transcoder %s has %d features and d_out %d, the cache %d and %d", p.Path, t.DSAE, t.DOut, man.DSAE, man.DModel)
		default:
			tc, tcProv = t, p
		}
	}
	want := analysis.MidcoderWant{Layer: layer, DModel: man.DModel, DSAE: dSAE, Model: man.Model, Transcoder: tcProv, Flag: "--midcoder"}
	if man.WithActs && man.Transcoder != nil {
		want.Transcoder = *man.Transcoder // the features the cache's acts are of
	}
	fit, fitMeta, err := loadMidcoder(o.midcoder, want)
	if err != nil {
		return nil, none, err
	}
	act := midcoder.ReLU
	if a, err := midcoder.ParseActivation(fitMeta.Config.Act); err == nil {
		act = a
	}
	var pinv *midcoder.Params
	if o.pinv != "" {
		want.Flag, want.Method = "--pinv", "pinv"
		if pinv, _, err = loadMidcoder(o.pinv, want); err != nil {
			return nil, none, err
		}
	}
	model, modelProv, err := g.loadMLP(layer, o.examples > 0 && o.pages > 0) // W_U for the pages' output views
	if err != nil {
		return nil, none, err
	}
	if err := c.CheckModel(modelProv); err != nil {
		return nil, none, err
	}
	if model.DModel != man.DModel || layer >= model.NLayer {
		return nil, none, fmt.Errorf("the cache %s (layer %d, d_model %d) does not fit the model (%d layers, d_model %d)", o.cache, layer, man.DModel, model.NLayer, model.DModel)
	}
	// The gating uses W_in and b_in; the pages' MLP effect the whole MLP,
	// through the activation the midcoder was fitted through.
	mlp := midcoder.NewMLP(model, layer, act)
	if o.topK > mlp.N {
		g.notef("report: --top-k %d is more than the MLP's %d neurons: the gating is measured over all %d", o.topK, mlp.N, mlp.N)
	}

	in := analysis.ReportInput{Cache: c, Connections: conns, TC: tc, MLP: mlp, Fit: fit, FitUntrained: fitMeta.Untrained, Pinv: pinv, TopK: o.topK, Features: o.features,
		Examples: o.examples, MinCount: o.minCount, Pages: o.pages, WU: model.WU, Vocab: model.DVocab, Effect: o.effect, SkipFirstPosition: o.skipFirst,
		NewEffect: g.backend.effect()}
	if tc != nil {
		in.NeuronpediaBase = analysis.NeuronpediaBase(tcProv.Path, layer, man.DModel, tc.DSAE)
	}
	bar := progress.New(g.stderr, "report", man.NTokens, "tokens", g.quiet)
	res, err := analysis.Report(ctx, in, bar)
	bar.Finish()
	if err != nil {
		return nil, none, err
	}

	hist, note := o.history, ""
	if hist == "" {
		cand := filepath.Join(filepath.Dir(o.midcoder), midcoder.HistoryFile)
		if _, err := os.Stat(cand); err == nil {
			hist = cand
		} else {
			note = fmt.Sprintf("no --history given and no %s next to %s", midcoder.HistoryFile, o.midcoder)
		}
	}
	prov, err := reportProvenance(g, o, c.Dir, man, modelProv, tcProv, hist)
	if err != nil {
		return nil, none, err
	}
	res.Summary.Provenance = prov
	return res, analysis.RenderInput{Result: res, CacheDir: o.cache, MidcoderFile: o.midcoder,
		PinvFile: o.pinv, HistoryPath: hist, HistoryNote: note}, nil
}

// printReport prints what report wrote: its summary (the JSON summary
// with --json). A layer of a set (inSet) is written with the set, once
// every layer is done.
func printReport(g *globalOptions, o *reportOptions, res *analysis.ReportResult, r *analysis.Rendered, inSet bool) error {
	if g.json {
		return json.NewEncoder(g.stdout).Encode(struct {
			analysis.Summary
			Out     string   `json:"out"`
			Files   []string `json:"files"`
			Omitted []string `json:"omitted"`
		}{res.Summary, o.out, r.Files, append([]string{}, r.Omitted...)})
	}
	s := res.Summary
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "layer %d: %d tokens, %d of %d features fire\n", s.Layer, s.Tokens, s.FeaturesLive, s.FeaturesTotal)
	fmt.Fprintf(w, "table\t%s\n", s.Selection)
	if s.FitUntrained != nil && *s.FitUntrained > 0 {
		fmt.Fprintf(w, "untrained\t%d features the fit never trained, %d of them live: left out below (fit_trained 0)\n", *s.FitUntrained, s.FeaturesLiveUntrained)
	}
	fmt.Fprintf(w, "consistency mean / median\t%.4f / %.4f (live, trained)\n", s.ConsistencyMean, s.ConsistencyMedian)
	fmt.Fprintf(w, "consistency > 0.9 / < 0.5\t%.4f / %.4f of live trained features\n", s.FracConsistencyAbove09, s.FracConsistencyBelow05)
	if s.HasPinv {
		fmt.Fprintf(w, "cos(fit, pinv) mean / median\t%.4f / %.4f (live, trained)\n", s.CosMean, s.CosMedian)
	}
	if s.HasEffect {
		fmt.Fprintf(w, "effect_consistency mean / median\t%.4f / %.4f\n", s.EffectConsistencyMean, s.EffectConsistencyMedian)
		fmt.Fprintf(w, "cos(effect, W_dec) median\t%.4f\n", s.CosEffectDecMedian)
	}
	for _, om := range r.Omitted {
		fmt.Fprintf(w, "left out\t%s\n", om)
	}
	if inSet {
		fmt.Fprintf(w, "report\t%s (%d files; the set is written once every layer is done)\n", o.out, len(r.Files))
	} else {
		fmt.Fprintf(w, "wrote\t%s (%d files; open index.html)\n", o.out, len(r.Files))
	}
	return w.Flush()
}

// reportProvenance records what made the report: ctxdep's version, each
// input with its size and SHA-256 (the cache by its manifest, with the
// model, transcoder and data the manifest records), and the flags.
func reportProvenance(g *globalOptions, o *reportOptions, cacheDir string, man *actcache.Manifest, model, tc provenance.File, history string) (*analysis.Provenance, error) {
	p := &analysis.Provenance{CtxdepVersion: version, Flags: o.flags}
	add := func(role, path string) error {
		if path == "" {
			return nil
		}
		f, err := g.hash(path)
		if err != nil {
			return fmt.Errorf("report: provenance of %s: %w", path, err)
		}
		p.Inputs = append(p.Inputs, analysis.ProvenanceInput{Role: role, File: f})
		return nil
	}
	if err := add("cache manifest", filepath.Join(cacheDir, actcache.ManifestName)); err != nil {
		return nil, err
	}
	if err := add("midcoder", o.midcoder); err != nil {
		return nil, err
	}
	if err := add("pinv midcoder", o.pinv); err != nil {
		return nil, err
	}
	p.Inputs = append(p.Inputs, analysis.ProvenanceInput{Role: "model", File: model})
	if tc.SHA256 != "" {
		p.Inputs = append(p.Inputs, analysis.ProvenanceInput{Role: "transcoder", File: tc})
	}
	if err := add("history", history); err != nil {
		return nil, err
	}
	if man.Transcoder != nil && man.Transcoder.SHA256 != tc.SHA256 {
		p.Inputs = append(p.Inputs, analysis.ProvenanceInput{Role: "transcoder whose acts the cache stores (as its manifest records)", File: *man.Transcoder})
	}
	if man.Data.SHA256 != "" {
		p.Inputs = append(p.Inputs, analysis.ProvenanceInput{Role: "cache's data (" + man.Data.Kind + ", as its manifest records)", File: man.Data.File})
	}
	return p, nil
}
