package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
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

// staging is pinv-baseline --layers' files, each complete under a
// temporary name beside its --out (atomicfile.TempName, so that a killed
// run's are removed by the next), with its lock held, until commit
// renames them all into place.
type staging struct {
	files []stagedFile
}

type stagedFile struct {
	tmp, out string
	lock     *dirlock.Lock
}

// commit renames every staged file onto its --out and releases the locks.
func (s *staging) commit() error {
	for i, f := range s.files {
		if err := os.Rename(f.tmp, f.out); err != nil {
			return fmt.Errorf("%w (the layers' files before it are in place, %d after it are not)", err, len(s.files)-i-1)
		}
		atomicfile.SyncDir(filepath.Dir(f.out))
	}
	s.abort() // removes nothing left, releases the locks
	return nil
}

// abort removes the staged files that were not renamed and releases the
// locks.
func (s *staging) abort() {
	for _, f := range s.files {
		os.Remove(f.tmp)
		f.lock.Release()
	}
	s.files = nil
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
			if o.layers != "" {
				defer removeIfNewAndEmpty(o.out)(&err) // --out DIR: made for the layers' files
			}
			if o.layers != "" && o.out == "" {
				return usagef("pinv-baseline --layers needs --out DIR")
			}
			if err := actcache.CheckOutside("--out "+o.out, o.out); err != nil {
				return err // as the user gave it, not its layer-LL.safetensors
			}
			outOf := func(layer int) string { return filepath.Join(o.out, actcache.LayerDirName(layer)+".safetensors") }
			check := func(layer int) error { return checkOutFile(outOf(layer), o.force) }
			// With --layers each layer's file is staged and all are
			// renamed into place once every layer is done: a failed
			// run leaves none of an earlier set replaced.
			var st staging
			defer st.abort()
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
	addLayersFlag(cmd, &o.layers, "--out DIR gets DIR/layer-LL.safetensors per layer")
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

func runPinv(ctx context.Context, g *globalOptions, o *pinvOptions, layerSet bool) error {
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
	if o.layers != "" { // --out DIR, made once the flags passed
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
	}
	// The lock from here to the write: a second run is refused before
	// its work, not after.
	lock, err := lockOutFile(g, o.out, "pinv-baseline", o.force)
	if err != nil {
		return err
	}
	tmp := o.out
	if o.stage == nil {
		defer lock.Release()
	} else { // released by the staging's commit or abort
		tmp = atomicfile.TempName(o.out)
		o.stage.files = append(o.stage.files, stagedFile{tmp: tmp, out: o.out, lock: lock})
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

// checkOutFile applies the rules of an --out file (pinv-baseline,
// tokenize) before any work: never a file inside an activation cache (its
// manifest.json or a shard, not even with --force), never a directory,
// and an existing file only with --force. The file is written atomically
// (a temporary file renamed into place), so a failed run leaves an
// existing one as it was.
func checkOutFile(path string, force bool) error {
	if err := actcache.CheckOutside("--out "+path, path); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("--out %s is a directory: give the path of a file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("--out %s exists and is not a regular file; choose another path", path)
	case !force:
		return fmt.Errorf("--out %s already exists: pass --force to replace it, or choose another path", path)
	}
	return nil
}

// lockOutFile takes the lock beside the --out file path (a second run
// that writes it is refused, naming the first), applies checkOutFile's
// rules again under it, and removes the temporary files of path that a
// killed run left (a full tokenize's can be gigabytes). The caller writes
// path, then releases the lock.
func lockOutFile(g *globalOptions, path, what string, force bool) (*dirlock.Lock, error) {
	lock, err := dirlock.TryLock(dirlock.Beside(path), dirlock.Options{What: "ctxdep " + what, Subject: path})
	if err != nil {
		return nil, err
	}
	if err := checkOutFile(path, force); err != nil {
		lock.Release()
		return nil, err
	}
	dir, base := filepath.Split(filepath.Clean(path))
	removed, err := atomicfile.RemoveLeftovers(filepath.Clean(dir), func(b string) bool {
		staged, ok := atomicfile.ParseTempName(b) // a file being staged, itself written through a temporary file
		return b == base || ok && staged == base
	})
	if len(removed) > 0 {
		g.notef("removed %s that a killed run left beside %s (%s)", plural(len(removed), "temporary file"), path, strings.Join(removed, ", "))
	}
	if err != nil {
		g.notef("cannot remove the temporary files that a killed run left beside %s: %v", path, err)
	}
	return lock, nil
}
