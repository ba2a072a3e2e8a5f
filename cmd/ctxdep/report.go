package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

type reportOptions struct {
	cache    string
	midcoder string
	pinv     string
	history  string
	out      string
	topK     int
	features int
}

func newReportCmd(g *globalOptions) *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report --cache DIR --midcoder FILE [--pinv FILE] [--history FILE] --out DIR",
		Short: "Per-feature context-dependence report: firing frequency, neuron gating consistency, cos(fit, pinv)",
		Long: `Streams once over the cache (memory: one shard and F × top-k counters) and
computes for each transcoder feature f:
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
Gating statistics cover only each feature's top-k neurons; --features N keeps
the first N features that fire on the cache (default: all features).

Writes into --out: features.csv and features.safetensors (one row per feature),
summary.json, PNG plots (histogram of consistency, consistency against log10
frequency, histogram of cos(fit, pinv) with --pinv, loss curves from --history
or the history.csv next to the midcoder file), index.md and a self-contained
index.html with the definitions of every statistic. A missing or malformed
history leaves out the loss plot and index.md says why.

The model is needed for the layer's MLP weights; the transcoder only when the
cache stores no acts (built without --with-acts).`,
		Example: `  ctxdep report --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --pinv pinv-l8.safetensors --out report-l8
  ctxdep report --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --out report-l8 --top-k 16 --features 2000`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd.Context(), g, o, cmd.Flags().Changed("layer"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cache, "cache", "", "activation cache to stream over")
	f.StringVar(&o.midcoder, "midcoder", "", "fitted midcoder file (from fit)")
	f.StringVar(&o.pinv, "pinv", "", "pinv-baseline midcoder file to compare mid vectors with")
	f.StringVar(&o.history, "history", "", "fit's history.csv for the loss curves (default: history.csv next to --midcoder)")
	f.StringVar(&o.out, "out", "", "output directory")
	f.IntVar(&o.topK, "top-k", 8, "neurons per feature whose gating is measured")
	f.IntVar(&o.features, "features", 0, "keep only the first N live features (0: all)")
	addJSONFlag(cmd, g)
	return cmd
}

// loadMidcoder loads a midcoder file (evaluate's and report's) and checks
// it against the cache's layer and width and the transcoder's width.
func loadMidcoder(file string, layer, dModel, dSAE int, model provenance.File) (*midcoder.Params, midcoder.Meta, error) {
	p, meta, err := midcoder.Load(file)
	if err != nil {
		return nil, meta, err
	}
	if err := analysis.CheckMidcoderMeta(file, meta, layer, dModel, dSAE, model); err != nil {
		return nil, meta, err
	}
	return p, meta, nil
}

func runReport(ctx context.Context, g *globalOptions, o *reportOptions, layerSet bool) error {
	g.backend.cpuOnly("report")
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
	if err := analysis.CheckReportOut(o.out); err != nil {
		return err // before the pass over the cache
	}
	c, err := g.openCacheAt(o.cache, layerSet)
	if err != nil {
		return err
	}
	man := c.Manifest
	layer := man.Layer
	// Check the midcoder files against the cache before loading the model.
	dSAE := man.DSAE
	var tc *transcoder.Transcoder
	if !man.WithActs {
		if tc, _, _, err = g.loadTranscoder(layer, man.DModel); err != nil {
			return fmt.Errorf("%w (the cache %s stores no acts, so the transcoder encodes its x)", err, o.cache)
		}
		dSAE = tc.DSAE
	}
	fit, _, err := loadMidcoder(o.midcoder, layer, man.DModel, dSAE, man.Model)
	if err != nil {
		return err
	}
	var pinv *midcoder.Params
	if o.pinv != "" {
		if pinv, _, err = loadMidcoder(o.pinv, layer, man.DModel, dSAE, man.Model); err != nil {
			return err
		}
	}
	model, modelProv, err := g.loadModel()
	if err != nil {
		return err
	}
	if err := c.CheckModel(modelProv); err != nil {
		return err
	}
	if model.DModel != man.DModel || layer >= model.NLayer {
		return fmt.Errorf("the cache %s (layer %d, d_model %d) does not fit the model (%d layers, d_model %d)", o.cache, layer, man.DModel, model.NLayer, model.DModel)
	}
	mlp := midcoder.NewMLP(model, layer, midcoder.ReLU) // only W_in and b_in are used

	bar := progress.New(g.stderr, "report", man.NTokens, "tokens", g.quiet)
	res, err := analysis.Report(ctx, analysis.ReportInput{Cache: c, TC: tc, MLP: mlp, Fit: fit, Pinv: pinv, TopK: o.topK, Features: o.features}, bar)
	bar.Finish()
	if err != nil {
		return err
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
	r, err := analysis.WriteReport(o.out, analysis.RenderInput{Result: res, CacheDir: o.cache, MidcoderFile: o.midcoder,
		PinvFile: o.pinv, HistoryPath: hist, HistoryNote: note})
	if err != nil {
		return err
	}
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
	fmt.Fprintf(w, "layer %d: %d tokens, %d of %d features fire\t\n", s.Layer, s.Tokens, s.FeaturesLive, s.FeaturesTotal)
	fmt.Fprintf(w, "table\t%s\n", s.Selection)
	fmt.Fprintf(w, "consistency mean / median\t%.4f / %.4f\n", s.ConsistencyMean, s.ConsistencyMedian)
	fmt.Fprintf(w, "consistency > 0.9 / < 0.5\t%.4f / %.4f of live features\n", s.FracConsistencyAbove09, s.FracConsistencyBelow05)
	if s.HasPinv {
		fmt.Fprintf(w, "cos(fit, pinv) mean / median\t%.4f / %.4f\n", s.CosMean, s.CosMedian)
	}
	for _, om := range r.Omitted {
		fmt.Fprintf(w, "left out\t%s\n", om)
	}
	fmt.Fprintf(w, "wrote\t%s (%d files; open index.html)\n", o.out, len(r.Files))
	return w.Flush()
}
