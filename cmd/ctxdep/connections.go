package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

type connectionsOptions struct {
	cache     string
	layers    string
	out       string
	topK      int
	memoryMiB int
	block     int
	force     bool
}

// Defaults of connections' flags.
const (
	connDefaultTopK      = 16
	connDefaultMemoryMiB = 1024
)

func newConnectionsCmd(g *globalOptions) *cobra.Command {
	o := &connectionsOptions{}
	cmd := &cobra.Command{
		Use:   "connections --cache SET --layers L,L′ --out DIR",
		Short: "Connections between two layers' transcoders: virtual weights V against mean attributions Ā",
		Long: `For the transcoders of layers L < L′ of a layer set (cache build --layers L,L′
--with-acts), compares two views of how source feature i (layer L) feeds target
feature j (layer L′) through the residual stream at the same token t:

  V_ij = c(W_dec^L[i]) · W_enc^L′[:, j]     the virtual weight: input-invariant,
                                            from the weights alone (c subtracts
                                            the mean over d_model, the centring of
                                            the next LayerNorm)
  A_ij(t) = acts_i^L(t) · V_ij / s^L′(t)    the attribution at token t: what i
                                            added to j's pre-activation there, s
                                            being blocks.L′.ln2.hook_scale
  Ā_ij = mean of A_ij(t) over the tokens where j fires (acts_j^L′(t) > 0)

Per target j it lists the top-k sources by |V| and the top-k by |Ā| (larger first,
ties to the lower source index; the Ā list leaves out sources with Ā = 0, which
never fire together with j) and computes
  spearman      the rank correlation (average ranks for ties) of V_·j and Ā_·j over
                the union of the two lists' sources
  share_topk_v  Σ over the top-k sources by |V| of |Ā_ij| / Σ over ALL sources of
                |Ā_ij|: how much of j's average input from layer L the weights pick out
How to read them: near 1, j's inputs are predictable from the weights alone: the
sources with the largest virtual weights are the ones that drive j in the data
(context-independent connections). Low values mean the data decides: which sources
co-occur with j, and how strongly, matters more than the size of the weights; the
Ā list then names j's real inputs. Both are NaN for a target that never fires.
Ā_ij always has V_ij's sign (a mean of acts/s ≥ 0 times V_ij), so spearman credits
sign agreement that holds by construction and runs higher than share_topk_v:
read share_topk_v as the stricter measure.

Cost and memory: V is F × F′ (24,576² = 2.4 GB in float32 for GPT-2 small) and is
never held whole. Targets are processed in blocks: per block, one pass over both
layers' caches accumulates Σ acts_i/s for the block's targets into a dense float64
block of F × block (--memory MiB sets the block: 1,024 MiB holds 5,461 targets of
a 24,576-feature source, 5 passes; float64 because a float32 sum over millions of
co-firing tokens would drift by percents), then V's columns for the block come from GEMMs
(F·d_model·2 flops per target: 0.93 TFLOP for all of GPT-2 small's pairs), and
only each target's lists and statistics are kept. Add ~(F + F′)·d_model·4 bytes
for the weights (150 MB) and 25 MB of V rows. The per-token work is one update
per (active source, active target) pair, ~40 × 40 per token, spread over the
passes. A cache without stored acts is encoded with the layer's transcoder, again
on each pass. The model's weights are not needed: its SHA-256 is the one the
cache records (checked against --model when given).

Writes into --out (a new directory, or an earlier run's with --force; never a
cache): connections.csv (one row per target: target, count, spearman,
share_topk_v, abs_abar_sum, and the lists top_v and top_abar as "i:V:Abar"
entries joined by ";", in rank order), connections.safetensors (count I64 [F′];
spearman, share_topk_v, abs_abar_sum F32 [F′]; top_v.index I32 [F′, k] with
top_v.v and top_v.abar F32 [F′, k], the same for top_abar; unused slots index −1
and NaN), summary.json (settings, histograms' bins, provenance: ctxdep version,
the caches' manifests, model and transcoders with SHA-256), histograms of both
statistics (PNG) and index.md. --out is written as a whole, at the end: a failed
or interrupted run leaves an earlier one there as it was.`,
		Example: `  ctxdep cache build --layers 5,6 --with-acts --tokens tokens.npy --out set-5-6
  ctxdep connections --cache set-5-6 --layers 5,6 --out conn-5-6
  ctxdep connections --cache set-5-6 --layers 5,6 --top-k 32 --memory 4096 --out conn-5-6 --force`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := map[string]string{}
			cmd.Flags().Visit(func(f *pflag.Flag) { flags[f.Name] = f.Value.String() })
			return runConnections(cmd.Context(), g, o, cmd.Flags().Changed("layer"), flags)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cache, "cache", "", "layer set holding both layers (cache build --layers L,L′)")
	f.StringVar(&o.layers, "layers", "", "the source and target layers L,L′ (L < L′)")
	f.StringVar(&o.out, "out", "", "output directory")
	f.IntVar(&o.topK, "top-k", connDefaultTopK, "sources listed per target in each view")
	f.IntVar(&o.memoryMiB, "memory", connDefaultMemoryMiB, "MiB for the block of accumulated attributions (F × targets per pass, float64);\nfewer MiB, more passes over the caches")
	f.IntVar(&o.block, "block", 0, "targets per pass over the caches, instead of what --memory allows (0: from --memory)")
	f.BoolVar(&o.force, "force", false, "replace an earlier run's --out directory")
	addJSONFlag(cmd, g)
	return cmd
}

// parseLayerPair parses --layers L,L′.
func parseLayerPair(s string) (int, int, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return 0, 0, usagef("--layers %q: want two layers L,L′ (source, target), e.g. 5,6", s)
	}
	var ls [2]int
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return 0, 0, usagef("--layers %q: %q is not a layer", s, p)
		}
		ls[i] = v
	}
	if ls[0] >= ls[1] {
		return 0, 0, usagef("--layers %q: the source layer must come before the target layer (L < L′)", s)
	}
	return ls[0], ls[1], nil
}

// connLayer is one layer of the pair: its cache, transcoder, and the
// encoder when its cache stores no acts of that transcoder.
type connLayer struct {
	layer int
	cache *actcache.Cache
	tc    *transcoder.Transcoder
	prov  provenance.File
	enc   *transcoder.Encoder
}

// openConnLayer opens layer's cache in the set and its transcoder.
func openConnLayer(g *globalOptions, set string, layer int) (*connLayer, error) {
	g.layer = layer
	c, err := g.openCacheAt(set, true)
	if err != nil {
		return nil, err
	}
	// y is never read here: a cache that stores none needs no MLP.
	c.YFromX = func(x, y []float32, rows int) error { return nil }
	man := c.Manifest
	tc, prov, _, err := g.loadTranscoder(layer, man.DModel)
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", layer, err)
	}
	if tc.DOut != man.DModel {
		return nil, fmt.Errorf("transcoder %s has d_out %d, the cache %s d_model %d", prov.Path, tc.DOut, c.Dir, man.DModel)
	}
	l := &connLayer{layer: layer, cache: c, tc: tc, prov: prov}
	if !man.StoresActsOf(prov) {
		l.enc = tc.NewEncoder()
		why := "stores no acts"
		if man.WithActs {
			why = "stores another transcoder's acts"
		}
		g.notef("connections: the cache %s %s: encoding its x with %s on every pass", displayPath(c.Dir), why, displayPath(prov.Path))
	}
	return l, nil
}

func runConnections(ctx context.Context, g *globalOptions, o *connectionsOptions, layerFlag bool, flags map[string]string) error {
	g.backend.cpuOnly("connections")
	switch {
	case o.cache == "":
		return usagef("connections needs --cache SET (a layer set: cache build --layers L,L′)")
	case o.layers == "":
		return usagef("connections needs --layers L,L′ (source and target layer)")
	case o.out == "":
		return usagef("connections needs --out DIR")
	case layerFlag:
		return usagef("connections takes --layers L,L′, not --layer")
	case g.transcoder != "":
		return usagef("connections needs a transcoder per layer: pass --transcoders DIR, not --transcoder FILE")
	case o.topK < 1:
		return usagef("--top-k %d: want at least 1", o.topK)
	case o.memoryMiB < 1:
		return usagef("--memory %d: want at least 1 MiB", o.memoryMiB)
	case o.block < 0:
		return usagef("--block %d: want 0 (from --memory) or more", o.block)
	}
	src, tgt, err := parseLayerPair(o.layers)
	if err != nil {
		return err
	}
	if !actcache.IsLayerSet(o.cache) {
		return usagef("--cache %s is not a layer set: build one with `ctxdep cache build --layers %d,%d --with-acts …` (its caches store ln2.hook_scale)", o.cache, src, tgt)
	}
	set, err := actcache.ReadLayerSet(o.cache)
	if err != nil {
		return err
	}
	for _, l := range []int{src, tgt} {
		if !slices.Contains(set.Layers, l) {
			return usagef("--layers %s: the layer set %s holds layers %s, not %d", o.layers, o.cache, actcache.LayersText(set.Layers), l)
		}
	}
	if err := analysis.CheckConnectionsOut(o.out, o.force); err != nil {
		return outUsage(err)
	}
	ls, err := openConnLayer(g, o.cache, src)
	if err != nil {
		return err
	}
	lt, err := openConnLayer(g, o.cache, tgt)
	if err != nil {
		return err
	}
	ms, mt := ls.cache.Manifest, lt.cache.Manifest
	if !provenance.Same(ms.Model, mt.Model) {
		return fmt.Errorf("the caches of layers %d and %d were built from different models", src, tgt)
	}
	if err := checkConnModel(g, ls.cache); err != nil {
		return err
	}
	if ls.tc.DOut != lt.tc.DIn {
		return fmt.Errorf("layer %d's transcoder writes width %d, layer %d's reads %d", src, ls.tc.DOut, tgt, lt.tc.DIn)
	}
	if o.topK > ls.tc.DSAE {
		return usagef("--top-k %d: the source transcoder has %d features", o.topK, ls.tc.DSAE)
	}
	data, err := analysis.CacheConnData(ls.cache, lt.cache, ls.enc, lt.enc)
	if err != nil {
		return err
	}
	fs, ft, c := ls.tc.DSAE, lt.tc.DSAE, lt.tc.DIn
	block := o.block
	if block == 0 {
		block = analysis.BlockForMemory(int64(o.memoryMiB)<<20, fs, ft)
	}
	block = min(block, ft)
	passes := (ft + block - 1) / block
	g.logf("connections: %d sources, %d targets, block of %d targets (%d pass(es)), about %d MiB", fs, ft, block, passes,
		analysis.ConnMemory(fs, ft, c, block, o.topK)>>20)
	bar := progress.New(g.stderr, "connections", int64(passes)*mt.NTokens, "tokens", g.quiet)
	start := time.Now()
	res, err := analysis.Connections(ctx, ls.tc.WDec, lt.tc.WEnc, fs, ft, c, data, analysis.ConnOptions{TopK: o.topK, Block: block,
		Progress: func(pass, passes, rows int) {
			bar.Add(int64(rows), fmt.Sprintf("pass %d/%d", pass+1, passes))
		}})
	bar.Finish()
	if err != nil {
		return err
	}
	sum := analysis.NewConnSummary(res, src, tgt, o.cache)
	sum.Seconds = time.Since(start).Seconds()
	prov := &analysis.Provenance{CtxdepVersion: version, Flags: flags}
	for _, l := range []*connLayer{ls, lt} {
		mp, err := g.hash(filepath.Join(l.cache.Dir, actcache.ManifestName))
		if err == nil {
			prov.Inputs = append(prov.Inputs, analysis.ProvenanceInput{Role: fmt.Sprintf("cache manifest, layer %d", l.layer), File: mp})
		}
		prov.Inputs = append(prov.Inputs, analysis.ProvenanceInput{Role: fmt.Sprintf("transcoder, layer %d", l.layer), File: l.prov})
	}
	prov.Inputs = append(prov.Inputs, analysis.ProvenanceInput{Role: "model (as the cache records it)", File: ms.Model})
	sum.Provenance = prov
	files, err := analysis.WriteConnections(o.out, o.force, res, sum)
	if err != nil {
		return err
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(struct {
			Summary analysis.ConnSummary `json:"summary"`
			Out     string               `json:"out"`
			Files   []string             `json:"files"`
		}{sum, o.out, files})
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "connections\tlayer %d (%d features) → layer %d (%d features), top-k %d\n", src, fs, tgt, ft, o.topK)
	fmt.Fprintf(w, "tokens\t%d (%d pass(es), %d targets per pass, %.1f s)\n", res.Tokens, res.Passes, res.Block, sum.Seconds)
	fmt.Fprintf(w, "targets that fire\t%d of %d\n", sum.TargetsFiring, ft)
	for _, d := range []struct {
		name string
		d    analysis.ConnDist
	}{{"spearman", sum.Spearman}, {"share_topk_v", sum.ShareTopV}} {
		fmt.Fprintf(w, "%s\tmedian %s, mean %s, 10%%–90%% %s–%s (%d targets)\n", d.name, connText(d.d.Median), connText(d.d.Mean), connText(d.d.Q10), connText(d.d.Q90), d.d.N)
	}
	fmt.Fprintf(w, "wrote\t%s (%s)\n", o.out, strings.Join(files, ", "))
	return w.Flush()
}

// checkConnModel checks --model (or $CTXDEP_MODEL), when given, against
// the model the cache was built from; the model itself is not needed.
func checkConnModel(g *globalOptions, c *actcache.Cache) error {
	if g.model == "" && os.Getenv("CTXDEP_MODEL") == "" {
		return nil
	}
	dir, err := g.modelDir()
	if err != nil {
		return err
	}
	path, err := gpt2.WeightsPath(dir)
	if err != nil {
		return err
	}
	p, err := g.hash(path)
	if err != nil {
		return err
	}
	return c.CheckModel(p)
}

func connText(v float64) string {
	if v != v {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
