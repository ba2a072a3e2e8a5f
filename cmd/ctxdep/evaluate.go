package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/progress"
)

type evaluateOptions struct {
	cache     string
	midcoders []string
	layers    string
}

func newEvaluateCmd(g *globalOptions) *cobra.Command {
	o := &evaluateOptions{}
	cmd := &cobra.Command{
		Use:   "evaluate --cache DIR [--midcoder FILE]...",
		Short: "Cross-entropy with reconstructions spliced into blocks.L.hook_mlp_out",
		Long: `Runs the model over every cached sequence and reports the mean next-token
cross-entropy (nats, over all positions that have a next token):
  ce_clean          the model as it is
  ce_transcoder     blocks.L.hook_mlp_out replaced at every position by the
                    transcoder's reconstruction of blocks.L.ln2.hook_normalized
  midcoders[].ce    replaced by each --midcoder file's output (from fit or
                    pinv-baseline; its activation is read from the file)
  ce_zero_ablation  replaced by zeros
and each reconstruction's mse (mean over all elements of (recon − y)²) and nmse
(mse / mean(y²)) against the clean hook_mlp_out. Memory stays at one shard.

With --device cuda (a build with CUDA) the model passes, splices and
cross-entropies run on the GPU, 4,096 tokens at a time (32 sequences of 128); the
results agree with the CPU's to float32 rounding (the per-position losses are
summed in the CPU's order; the squared errors in another).`,
		Example: `  ctxdep evaluate --cache cache-l8 --midcoder fit-l8/midcoder.safetensors --midcoder pinv-l8.safetensors`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			layerFiles := func(layer int) ([]string, error) {
				files := make([]string, len(o.midcoders))
				for i, f := range o.midcoders {
					var err error
					if files[i], err = layerFile(f, layer); err != nil {
						return nil, err
					}
				}
				return files, nil
			}
			// Every layer's midcoder files against its cache before any work.
			check := func(layer int) error {
				files, err := layerFiles(layer)
				for _, f := range files {
					if err == nil {
						err = g.checkLayerMidcoder(o.cache, layer, f, analysis.MidcoderWant{Flag: "--midcoder"}, false)
					}
				}
				return err
			}
			return g.withLayersChecked(cmd, o.layers, o.cache, check, func(layerSet bool, layer int) error {
				lo := *o
				if o.layers != "" {
					var err error
					if lo.midcoders, err = layerFiles(layer); err != nil {
						return err
					}
				}
				return runEvaluate(cmd.Context(), g, &lo, layerSet)
			}, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cache, "cache", "", "activation cache whose sequences are evaluated")
	f.StringArrayVar(&o.midcoders, "midcoder", nil, "midcoder file to splice in (repeatable); with --layers, fit's or\npinv-baseline's --out DIR, whose file for each layer is used")
	addLayersFlag(cmd, &o.layers, "--cache", "one table per layer (with --json, one document holding each layer's)")
	addLayersJSONFlag(cmd, g)
	return cmd
}

func runEvaluate(ctx context.Context, g *globalOptions, o *evaluateOptions, layerSet bool) error {
	if o.cache == "" {
		return usagef("evaluate needs --cache DIR")
	}
	res, layer, err := evaluateCache(ctx, g, o, layerSet)
	if err != nil {
		return err
	}
	if g.json {
		if res.Midcoders == nil {
			res.Midcoders = []analysis.MidcoderResult{}
		}
		return json.NewEncoder(g.stdout).Encode(res)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "splice at blocks.%d.hook_mlp_out\tce (nats)\tmse\tnmse\n", layer)
	fmt.Fprintf(w, "clean\t%.5f\t\t\n", res.CEClean)
	fmt.Fprintf(w, "transcoder\t%.5f\t%.5g\t%.5g\n", res.CETranscoder, res.MSETranscoder, res.NMSETranscoder)
	for _, m := range res.Midcoders {
		fmt.Fprintf(w, "%s\t%.5f\t%.5g\t%.5g\n", m.File, m.CE, m.MSE, m.NMSE)
	}
	fmt.Fprintf(w, "zero ablation\t%.5f\t\t\n", res.CEZeroAblation)
	fmt.Fprintf(w, "(%d tokens, %d predictions)\t\t\t\n", res.Tokens, res.Predictions)
	return w.Flush()
}

// evaluateCache runs evaluate's splices over the cache o names (its layer
// as g.layer says when layerSet) and returns the scores and the layer.
func evaluateCache(ctx context.Context, g *globalOptions, o *evaluateOptions, layerSet bool) (*analysis.EvalResult, int, error) {
	c, err := g.openCacheAt(o.cache, layerSet)
	if err != nil {
		return nil, 0, err
	}
	layer := c.Manifest.Layer
	res, err := evaluateOpened(ctx, g, c, o.midcoders)
	return res, layer, err
}

// evaluateOpened is evaluateCache on an opened cache.
func evaluateOpened(ctx context.Context, g *globalOptions, c *actcache.Cache, midcoders []string) (*analysis.EvalResult, error) {
	layer := c.Manifest.Layer
	if c.Manifest.ContextLength < 2 {
		return nil, fmt.Errorf("the cache %s has sequences of %d token: no next-token targets", c.Dir, c.Manifest.ContextLength)
	}
	model, modelProv, err := g.loadModel()
	if err != nil {
		return nil, err
	}
	if err := c.CheckModel(modelProv); err != nil {
		return nil, err
	}
	tc, tcProv, _, err := g.loadTranscoder(layer, model.DModel)
	if err != nil {
		return nil, err
	}
	var mids []analysis.Midcoder
	for _, f := range midcoders {
		p, meta, err := loadMidcoder(f, analysis.MidcoderWant{Layer: layer, DModel: model.DModel, DSAE: tc.DSAE, Model: modelProv, Transcoder: tcProv, Flag: "--midcoder"})
		if err != nil {
			return nil, err
		}
		act := midcoder.ReLU
		if meta.Config.Act != "" {
			if act, err = midcoder.ParseActivation(meta.Config.Act); err != nil {
				return nil, fmt.Errorf("midcoder %s: %w", f, err)
			}
		}
		mids = append(mids, analysis.Midcoder{File: f, Params: p, MLP: midcoder.NewMLP(model, layer, act)})
	}
	if err := analysis.CheckEval(model, c, tc); err != nil {
		return nil, err
	}
	pass, err := g.backend.evalPass(model, layer, tc, mids, c.Manifest.ContextLength)
	if err != nil {
		return nil, err
	}
	defer pass.Close()
	bar := progress.New(g.stderr, "evaluate", c.Manifest.NTokens, "tokens", g.quiet)
	res, err := analysis.Evaluate(ctx, pass, c, mids, bar)
	bar.Finish()
	return res, err
}
