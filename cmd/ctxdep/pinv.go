package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

type pinvOptions struct {
	out    string
	cache  string
	act    string
	force  bool
	layers string
	stage  *staging // with --layers: where the file goes until every layer is done
}

func newPinvCmd(g *globalOptions) *cobra.Command {
	o := &pinvOptions{}
	cmd := &cobra.Command{
		Use:   "pinv-baseline --out FILE",
		Short: "The notebook's baseline mid vectors W_mid = W_dec @ pinv(W_in @ W_out)",
		Long: `Computes W_mid = W_dec @ pinv(W_in @ W_out) for layer L: W_dec is the
transcoder's decoder [F, C], W_in and W_out the block's TransformerLens-processed MLP
weights. If the MLP were linear, these mid vectors would map each feature through it
to its decoder direction. The SVD runs in float64 with torch.linalg.pinv's cut-off for
float32 input: singular values ≤ rtol·σ_max are dropped, rtol = max(m, n)·ε_float32
(9.16e-5 for 768). The processed W_in @ W_out has an exact null direction (the
all-ones vector, from the centring), so this rule decides the result; float64's own
ε would keep that direction and give values thousands of times too large.

Writes --out in fit's layout (W_mid F32 [F, C], b_mid F32 [C] of zeros; settings and
the SHA-256 of model and transcoder in the metadata; an existing file only with
--force, and never one inside an activation cache) and prints σ_max, the cut-off,
the rank and a summary of the spectrum. With --cache DIR it also reports loss and
loss_norm of the midcoder forward (--act) with these weights over all cached tokens.
With --layers, one file per layer: --out DIR/layer-LL.safetensors.`,
		Example: `  ctxdep pinv-baseline --layer 8 --out pinv-l8.safetensors --cache cache-l8
  ctxdep fit --init pinv --cache cache-l8 --out fit-l8   # start the fit from it
  ctxdep pinv-baseline --layers all --cache cache-all --out pinv-all`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if o.layers != "" && o.out == "" {
				return usagef("pinv-baseline --layers needs --out DIR")
			}
			if err := actcache.CheckOutside("--out "+o.out, o.out); err != nil {
				return err // as the user gave it, not its layer-LL.safetensors
			}
			if _, err := midcoder.ParseActivation(o.act); err != nil {
				return usagef("--act %q: want relu or gelu_new", o.act) // before --layers makes --out DIR
			}
			if fi, err := os.Stat(o.out); err == nil && !fi.IsDir() && o.layers != "" {
				return usagef("--out %s is not a directory: with --layers, --out is the directory of the layers' files (DIR/layer-LL.safetensors)", o.out)
			}
			if o.layers != "" {
				if err := putBackLayers(g, o.out); err != nil {
					return err
				}
			}
			outOf := func(layer int) string { return filepath.Join(o.out, actcache.LayerDirName(layer)+".safetensors") }
			// With --layers every layer's lock is taken before any
			// layer's work (a run writing one of them is found at once),
			// each layer's file is staged, and all are put in place once
			// every layer is done: a failed run leaves none of an earlier
			// set replaced.
			var made madeDirs                            // --out DIR and its parents, as made by check
			defer func() { made.removeIfFailed(&err) }() // after the locks, whose files are in them
			st := staging{force: o.force, notef: g.notef}
			defer st.abort()
			dirMade := false
			check := func(layer int) error {
				if !dirMade { // --out DIR, made as fit makes its --out
					var err error
					if made, err = makeDirs(o.out, o.out); err != nil {
						return err
					}
					dirMade = true
				}
				return st.add(g, outOf(layer))
			}
			return g.withLayersChecked(cmd, o.layers, o.cache, check, func(layerSet bool, layer int) error {
				lo := *o
				if o.layers != "" {
					lo.out, lo.stage = outOf(layer), &st
				}
				return runPinv(cmd.Context(), g, &lo, layerSet)
			}, st.commit)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "output safetensors file")
	f.StringVar(&o.cache, "cache", "", "activation cache to report loss and loss_norm on")
	f.StringVar(&o.act, "act", "relu", "MLP activation of the midcoder forward: relu or gelu_new")
	f.BoolVar(&o.force, "force", false, "replace an existing --out file (never one inside an activation cache)")
	addLayersFlag(cmd, &o.layers, "--cache", "--out DIR gets DIR/layer-LL.safetensors per layer")
	addLayersJSONFlag(cmd, g)
	return cmd
}

// pinvResult is what pinv-baseline reports (its --json keys first).
type pinvResult struct {
	Rank     int       `json:"rank"`
	RTol     float64   `json:"rtol"`
	SigmaMax float64   `json:"sigma_max"`
	Loss     *float64  `json:"loss,omitempty"`
	LossNorm *float64  `json:"loss_norm,omitempty"`
	Cutoff   float64   `json:"cutoff"`
	Sigma    []float64 `json:"sigma"`
	Out      string    `json:"out"`
}

func runPinv(ctx context.Context, g *globalOptions, o *pinvOptions, layerSet bool) (err error) {
	g.backend.cpuOnly("pinv-baseline")
	act, err := midcoder.ParseActivation(o.act)
	if err != nil {
		return usagef("--act %q: want relu or gelu_new", o.act)
	}
	if o.out == "" {
		return usagef("pinv-baseline needs --out FILE")
	}
	layer := g.layer
	var c *actcache.Cache
	if o.cache != "" {
		if c, err = g.openCacheAt(o.cache, layerSet); err != nil {
			return err
		}
		layer = c.Manifest.Layer
	}
	// The lock from here to the write: a second run is refused before
	// its work, not after. With --layers, every layer's was taken before
	// the first layer's work, and the file is staged.
	tmp := o.out
	if o.stage == nil {
		if err := checkOutFile(o.out, o.force); err != nil {
			return err // before anything is made
		}
		var made madeDirs
		if made, err = makeDirs(filepath.Dir(o.out), o.out); err != nil {
			return err
		}
		defer made.removeIfFailed(&err)
		lock, err := lockOutFile(g, o.out, "pinv-baseline", o.force)
		if err != nil {
			return err
		}
		defer lock.Release()
	} else if tmp, err = o.stage.tmpOf(o.out); err != nil {
		return err
	}
	model, modelProv, err := g.loadMLP(layer, false)
	if err != nil {
		return err
	}
	if err := checkLayer(model, layer); err != nil {
		return err
	}
	tc, tcProv, _, err := g.loadTranscoder(layer, model.DModel)
	if err != nil {
		return err
	}
	p, sp, err := analysis.PinvMidcoder(model, layer, tc)
	if err != nil {
		return err
	}
	res := pinvResult{Rank: sp.Rank, RTol: sp.RTol, SigmaMax: sp.SigmaMax, Cutoff: sp.Cutoff, Sigma: sp.Sigma, Out: o.out}
	if c != nil {
		if err := c.CheckModel(modelProv); err != nil {
			return err
		}
		var enc *transcoder.Encoder
		if !c.Manifest.StoresActsOf(tcProv) {
			enc = tc.NewEncoder()
		}
		loss, norm, err := analysis.CacheLoss(ctx, c, enc, midcoder.NewModel(midcoder.NewMLP(model, layer, act), p, analysis.LossBatch*c.Manifest.ContextLength))
		if err != nil {
			return err
		}
		res.Loss, res.LossNorm = &loss, &norm
	}
	meta := midcoder.Meta{Layer: layer, DModel: model.DModel, DSAE: tc.DSAE, Method: "pinv",
		Config:     midcoder.Config{Layer: layer, Init: "pinv", Act: act.String()},
		Provenance: midcoder.Provenance{Model: modelProv, Transcoder: tcProv}, CreatedBy: "ctxdep " + version}
	if err := midcoder.Save(tmp, p, meta); err != nil {
		return err
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(res)
	}
	fmt.Fprintf(g.stdout, "pinv baseline, layer %d: W_dec [%d, %d] @ pinv(W_in @ W_out [%d, %d])\n", layer, tc.DSAE, tc.DOut, model.DModel, model.DModel)
	fmt.Fprintf(g.stdout, "sigma_max  %.6g\nrtol       %.6g (max(m, n)·eps_float32)\ncutoff     %.6g\nrank       %d of %d\n", sp.SigmaMax, sp.RTol, sp.Cutoff, sp.Rank, len(sp.Sigma))
	s := sp.Sigma
	fmt.Fprintf(g.stdout, "spectrum   max %.4g, median %.4g, smallest kept %.4g, largest dropped %s\n", s[0], s[len(s)/2], s[max(sp.Rank-1, 0)], dropped(sp))
	if res.Loss != nil {
		fmt.Fprintf(g.stdout, "loss       %.6g\nloss_norm  %.6g   (%s, over the %d tokens of %s)\n", *res.Loss, *res.LossNorm, act, c.Manifest.NTokens, o.cache)
	}
	if o.stage != nil {
		fmt.Fprintf(g.stdout, "out        %s (written with the other layers' once every layer is done)\n", o.out)
	} else {
		fmt.Fprintf(g.stdout, "wrote      %s\n", o.out)
	}
	return nil
}

func dropped(sp analysis.Spectrum) string {
	if sp.Rank == len(sp.Sigma) {
		return "none"
	}
	return fmt.Sprintf("%.4g (%.2g·σ_max)", sp.Sigma[sp.Rank], sp.Sigma[sp.Rank]/sp.SigmaMax)
}
