package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/inspect"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

func newInspectCacheCmd(g *globalOptions) *cobra.Command {
	var layers string
	cmd := &cobra.Command{
		Use:   "inspect-cache DIR",
		Short: "Report a cache's manifest, size and statistics, and a transcoder's quality on it",
		Long: `Reports the manifest of the activation cache in DIR, its size on disk, token
counts and statistics of x and y over all cached tokens (BOS positions
included). For a layer set (cache build --layers), --layer L reports the
layer's cache and --layers LIST each in turn.

When a transcoder for the cache's layer is found (--transcoder FILE, or
--transcoders DIR, $CTXDEP_TRANSCODERS or the hub cache), it also reports
the transcoder's quality on the cache:
  l0_mean                mean number of features with activation > 0 per token
  mse                    mean over all elements of (reconstruction − y)²
  nmse                   mse / mean(y²)
  fire_frac              fraction of features that fire on at least one cached token
  features_never_firing  features that fire on no cached token
  live                   features live on the cache: they fire on at least one
                         cached token (what "live" means in every ctxdep output)
  frequent_in_training   features with log10 frequency > −4 in the transcoder's
                         sparsity file, its training run's firing rates (JSON
                         also as live_features, its former name)
Activations stored with --with-acts are used when their transcoder's
SHA-256 matches; otherwise x is encoded shard by shard.`,
		Example: `  ctxdep inspect-cache /tmp/cache --transcoders testdata/tiny-transcoders
  ctxdep inspect-cache cache-l8 --json | jq .transcoder.nmse`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withLayers(cmd, layers, args[0], func(layerSet bool, _ int) error {
				return runInspectCache(cmd.Context(), g, args[0], layerSet)
			})
		},
	}
	addLayersFlag(cmd, &layers, "DIR", "one report per layer")
	addLayersJSONFlag(cmd, g)
	return cmd
}

type inspectResult struct {
	Dir      string             `json:"dir"`
	Bytes    int64              `json:"size_bytes"`
	Manifest *actcache.Manifest `json:"manifest"`
	*inspect.Report
	TranscoderNote string `json:"transcoder_note,omitempty"`
}

func runInspectCache(ctx context.Context, g *globalOptions, dir string, layerSet bool) error {
	g.backend.cpuOnly("inspect-cache")
	c, err := g.openCacheAt(dir, layerSet)
	if err != nil {
		return err
	}
	m := c.Manifest
	res := inspectResult{Dir: c.Dir, Manifest: m}
	if res.Bytes, err = c.Bytes(); err != nil {
		return err
	}
	var opts inspect.Options
	tc, prov, sparsity, err := g.loadTranscoder(m.Layer, m.DModel)
	switch {
	case errors.Is(err, errNoTranscoder):
		res.TranscoderNote = "no transcoder found for layer " + fmt.Sprint(m.Layer)
	case err != nil:
		return err
	default:
		opts.Transcoder, opts.TransProv = tc, prov
		if tc.DOut != m.DModel {
			return fmt.Errorf("transcoder %s has d_out %d, the cache's d_model is %d", displayPath(prov.Path), tc.DOut, m.DModel)
		}
		if sparsity != "" {
			if opts.LogFreq, err = transcoder.LoadSparsity(sparsity); err != nil {
				return err
			}
			if len(opts.LogFreq) != tc.DSAE {
				return fmt.Errorf("%s has %d features, the transcoder %d", displayPath(sparsity), len(opts.LogFreq), tc.DSAE)
			}
		}
	}
	bar := progress.New(g.stderr, "inspect", m.NTokens, "tokens", g.quiet)
	opts.Progress = bar
	rep, err := inspect.Run(ctx, c, opts)
	bar.Finish()
	if err != nil {
		return err
	}
	res.Report = rep
	if g.json {
		return json.NewEncoder(g.stdout).Encode(res)
	}
	return printInspect(g, &res)
}

// printInspect prints the report as tables; the paths in it are shown as
// displayPath gives them (the --json report keeps them as recorded).
func printInspect(g *globalOptions, r *inspectResult) error {
	m := r.Manifest
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "cache\t%s (%s v%d)\n", displayPath(r.Dir), m.Format, m.Version)
	fmt.Fprintf(w, "layer\t%d (x = %s, y = %s)\n", m.Layer, m.Hooks.X, m.Hooks.Y)
	fmt.Fprintf(w, "tokens\t%d sequences × %d = %d tokens\n", m.NSequences, m.ContextLength, m.NTokens)
	fmt.Fprintf(w, "storage\t%s, d_model %d, %s, %s\n", m.DType, m.DModel, plural(len(m.Shards), "shard"), humanBytes(r.Bytes))
	fmt.Fprintf(w, "model\t%s (sha256 %.16s…)\n", displayPath(m.Model.Path), m.Model.SHA256)
	fmt.Fprintf(w, "data\t%s %s (sha256 %.16s…), %d of %d rows\n", m.Data.Kind, displayPath(m.Data.Path), m.Data.SHA256, m.Data.RowsTaken, m.Data.Rows)
	if m.WithActs && m.Transcoder != nil {
		fmt.Fprintf(w, "stored acts\t%s (sha256 %.16s…)\n", displayPath(m.Transcoder.Path), m.Transcoder.SHA256)
	}
	w.Flush()
	fmt.Fprintln(g.stdout)
	t := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(t, "hook\tmean\tstd\tmean_square\tmin\tmax\tmean_token_norm\tmax_abs_token_mean\tmean_token_variance\t")
	for _, h := range []struct {
		name string
		s    inspect.Stats
	}{{"x", r.X}, {"y", r.Y}} {
		s := h.s
		fmt.Fprintf(t, "%s\t%.4g\t%.4g\t%.4g\t%.4g\t%.4g\t%.4g\t%.3g\t%.6g\t\n", h.name, s.Mean, s.Std, s.MeanSquare, s.Min, s.Max, s.MeanNorm, s.MaxAbsRowMean, s.MeanRowVar)
	}
	t.Flush()
	fmt.Fprintln(g.stdout)
	if q := r.Transcoder; q != nil {
		w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "transcoder\t%s (%d features, acts %s)\n", displayPath(q.Path), q.NFeatures, q.ActsSource)
		fmt.Fprintf(w, "l0_mean\t%.4g\n", q.L0Mean)
		fmt.Fprintf(w, "mse\t%.6g\n", q.MSE)
		fmt.Fprintf(w, "nmse\t%.6g\n", q.NMSE)
		fmt.Fprintf(w, "fire_frac\t%.4g\n", q.FireFrac)
		fmt.Fprintf(w, "features_never_firing\t%d\n", q.FeaturesNeverFiring)
		fmt.Fprintf(w, "live\t%d (fire on at least one cached token)\n", q.Live)
		if q.FrequentInTraining != nil {
			fmt.Fprintf(w, "frequent_in_training\t%d (log10 frequency > -4 in the sparsity file)\n", *q.FrequentInTraining)
		} else {
			fmt.Fprintf(w, "frequent_in_training\tunknown (no sparsity file)\n")
		}
		w.Flush()
	} else {
		fmt.Fprintf(g.stdout, "transcoder: %s\n", r.TranscoderNote)
	}
	return nil
}
