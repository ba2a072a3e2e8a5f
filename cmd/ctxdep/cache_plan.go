package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/tokrows"
)

type cachePlanOptions struct {
	nTokens    int64
	layers     []int
	dtypes     []string
	workers    int
	maxLength  int
	perShard   int
	batchSize  int
	sampleRows int
	set        string
	storeY     bool
}

func newCachePlanCmd(g *globalOptions) *cobra.Command {
	o := &cachePlanOptions{}
	cmd := &cobra.Command{
		Use:   "plan --n-tokens N [--layer L]… [--dtype D]… [--workers N]",
		Short: "Estimate a cache's disk size and the time per worker before spending cluster time",
		Long: `Estimates, for a cache of --n-tokens tokens (rounded up to whole rows of
--max-length tokens), per layer and dtype:
  bytes per token   2·C·4 + 4 (float32) or 2·C·2 + 4 (float16): x and y of
                    C = d_model values each, plus the int32 token; shard
                    headers and manifests add under a kilobyte per shard
  disk              tokens × bytes per token (without --with-acts, which adds
                    8 bytes per token plus 8 per active feature)
  time per worker   the model load plus the rows the busiest worker computes
                    at the forward speed measured here: its ⌈R/N⌉ rows, in
                    whole batches of --batch-size rows (a worker whose rows
                    start or end inside a batch computes the whole batch, so
                    that every row is bit-identical to a one-machine build;
                    keep N well below R/--batch-size to keep that small)
The speed is measured now, on this machine, with this --model (the tiny
test model works too) and --threads: a warm-up row, then --sample-rows rows
to each --layer, as ` + "`cache build`" + ` runs them. Workers on other hardware run at
their own speed: measure there (e.g. in an interactive job) for numbers
you can trust. Sharding itself costs nothing per token.

--layer may be repeated (or comma-separated); each layer is its own cache,
built by its own pass. --layers LIST plans a layer set (cache build --layers):
one pass to the deepest listed layer per batch, timed as such, and each
layer's cache on disk (4 more bytes per token: a set's caches store the
float32 ln2.hook_scale). --store-y=false plans caches without y (C·size + 4
bytes per token).

Exit status: 0, 1 runtime error (no model), 2 usage error.`,
		Example: `  ctxdep cache plan --n-tokens 100000000 --layer 8 --dtype float16 --workers 16
  ctxdep cache plan --model testdata/tiny-gpt2 --n-tokens 1000000 --layer 0,2 --dtype float32,float16 --workers 4 --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := layerFlags(cmd, o.set); err != nil {
				return err
			}
			return runCachePlan(cmd.Context(), g, o, cmd.Flags().Changed("max-length"))
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.nTokens, "n-tokens", 0, "tokens to cache (required)")
	// Shadows the persistent --layer so that it can be repeated.
	f.IntSliceVar(&o.layers, "layer", []int{8}, "layer(s) to plan for: repeat or comma-separate")
	f.StringSliceVar(&o.dtypes, "dtype", []string{"float32"}, "storage type(s) of x and y: float32, float16")
	f.IntVar(&o.workers, "workers", 1, "number of workers N")
	f.IntVar(&o.maxLength, "max-length", tokrows.DefaultMaxLength, "tokens per row, as in ctxdep tokenize (capped at the model's context unless given)")
	f.IntVar(&o.perShard, "sequences-per-shard", 128, "rows per shard file, as in cache build")
	f.IntVar(&o.batchSize, "batch-size", 32, "rows per forward pass, as in cache build (the same on every worker)")
	f.IntVar(&o.sampleRows, "sample-rows", 8, "rows in the timed forward pass")
	f.StringVar(&o.set, "layers", "", "plan a layer set (cache build --layers): e.g. 0-11 or all")
	f.BoolVar(&o.storeY, "store-y", true, "plan caches that store y (--store-y=false: x only, as cache build --store-y=false)")
	addJSONFlag(cmd, g)
	return cmd
}

type planLine struct {
	Layer            int     `json:"layer"`
	DType            string  `json:"dtype"`
	BytesPerToken    int64   `json:"bytes_per_token"`
	Bytes            int64   `json:"bytes"`
	Shards           int     `json:"shards"`
	TokensPerSecond  float64 `json:"tokens_per_second"`
	SecondsTotal     float64 `json:"seconds_total"`      // all tokens on one worker, without the model load
	SecondsPerWorker float64 `json:"seconds_per_worker"` // the largest worker, model load included
}

type planResult struct {
	NTokens        int64      `json:"n_tokens"` // as asked
	Tokens         int64      `json:"tokens"`   // rounded up to whole rows
	Rows           int        `json:"rows"`
	ContextLength  int        `json:"context_length"`
	Workers        int        `json:"workers"`
	BatchSize      int        `json:"batch_size"`
	RowsPerWorker  int        `json:"rows_per_worker_max"`          // rows the largest worker caches
	ComputedRows   int        `json:"computed_rows_per_worker_max"` // rows the busiest worker computes, whole batches
	Model          string     `json:"model"`
	DModel         int        `json:"d_model"`
	MeasuredTokens int        `json:"measured_tokens"` // per layer
	Threads        int        `json:"threads"`
	BLAS           string     `json:"blas"`
	LoadSeconds    float64    `json:"load_seconds"`
	Plans          []planLine `json:"plans"`
	BytesTotal     int64      `json:"bytes_total"`
	// LayerSet lists the layers of a layer-set plan (--layers): one pass
	// to the deepest caches all of them, so each line's time is the set's.
	LayerSet []int `json:"layer_set,omitempty"`
}

func runCachePlan(ctx context.Context, g *globalOptions, o *cachePlanOptions, lengthSet bool) error {
	switch {
	case o.nTokens <= 0:
		return usagef("cache plan needs --n-tokens N (N > 0)")
	case o.workers < 1 || o.workers > actcache.MaxWorkers:
		return usagef("--workers %d is not in 1..%d", o.workers, actcache.MaxWorkers)
	case o.maxLength <= 0 || o.perShard <= 0 || o.sampleRows <= 0 || o.batchSize <= 0:
		return usagef("--max-length, --sequences-per-shard, --batch-size and --sample-rows must be positive")
	case len(o.layers) == 0:
		return usagef("--layer: give at least one layer")
	}
	for _, d := range o.dtypes {
		if d != "float32" && d != "float16" {
			return usagef("--dtype %q: want float32 or float16", d)
		}
	}
	// The flags against the model's shapes, before loading it: the row
	// length, and the memory of the timed pass and of the build planned (a
	// plan for a build that cache build would refuse here is refused too).
	mc, err := g.modelConfig()
	if err != nil {
		return err
	}
	t := o.maxLength
	if t > mc.NCtx {
		if lengthSet {
			return usagef("--max-length %d is longer than the model's context of %d", t, mc.NCtx)
		}
		t = mc.NCtx
	}
	if err := checkMemory(t, measureBuffers(o.sampleRows, mc.DModel, mc.DMLP, g.backend.cpu())); err != nil {
		return err
	}
	if o.set != "" {
		if o.layers, err = parseLayerList(o.set, mc.NLayer); err != nil {
			return err
		}
	}
	inPass := 1 // layers one pass captures
	if o.set != "" {
		inPass = len(o.layers)
	}
	if err := checkMemory(t, buildBuffers(o.batchSize, o.perShard, mc.DModel, mc.DMLP, inPass, g.backend.cpu())...); err != nil {
		return err
	}
	start := time.Now()
	m, modelProv, err := g.loadModelThrough(o.layers...)
	if err != nil {
		return err
	}
	load := time.Since(start).Seconds()
	for _, l := range o.layers {
		if err := checkLayer(m, l); err != nil {
			return err
		}
	}
	plan, err := cachebuild.NewPlan(cachebuild.PlanInput{NTokens: o.nTokens, RowLen: t, Workers: o.workers,
		BatchSize: o.batchSize, PerShard: o.perShard, DModel: m.DModel, NoY: !o.storeY, Scale: o.set != ""})
	if err != nil {
		if errors.Is(err, cachebuild.ErrPlan) {
			err = usageError{err}
		}
		return err
	}
	res := planResult{NTokens: o.nTokens, Tokens: plan.Tokens, Rows: plan.Rows, ContextLength: t, Workers: o.workers,
		BatchSize: o.batchSize, RowsPerWorker: plan.RowsPerWorker, ComputedRows: plan.ComputedRows, Model: modelProv.Path, DModel: m.DModel,
		MeasuredTokens: o.sampleRows * t, Threads: g.blas.Threads, BLAS: g.blas.Backend, LoadSeconds: load}
	layers := slices.Clone(o.layers)
	slices.Sort(layers)
	layers = slices.Compact(layers)
	res.BLAS = g.backend.describe()
	// measure times a pass capturing ls, freeing it before the next one.
	measure := func(ls []int) (float64, error) {
		pass, free, err := g.backend.pass(m, ls, nil, o.sampleRows, t)
		if err != nil {
			return 0, err
		}
		defer free()
		return cachebuild.Measure(ctx, m, pass, ls, o.sampleRows, t)
	}
	setTPS := 0.0 // a layer set's pass to its deepest layer
	if o.set != "" {
		if setTPS, err = measure(layers); err != nil {
			return err
		}
		res.LayerSet = layers
	}
	for _, l := range layers {
		tps := setTPS
		if o.set == "" {
			if tps, err = measure([]int{l}); err != nil {
				return err
			}
		}
		for _, d := range o.dtypes {
			e := plan.Estimate(d, tps, load)
			p := planLine{Layer: l, DType: d, BytesPerToken: e.BytesPerToken, Bytes: e.Bytes, Shards: plan.Shards, TokensPerSecond: tps,
				SecondsTotal: e.SecondsTotal, SecondsPerWorker: e.SecondsPerWorker}
			res.Plans = append(res.Plans, p)
			res.BytesTotal += p.Bytes
		}
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(res)
	}
	fmt.Fprintf(g.stdout, "%d tokens = %d rows of %d tokens; %d worker(s), at most %d rows (%d tokens) each\n",
		res.NTokens, res.Rows, t, res.Workers, res.RowsPerWorker, res.RowsPerWorker*t)
	if res.Workers > 1 {
		fmt.Fprintf(g.stdout, "batches of %d rows on one grid: the busiest worker computes %d rows (whole batches; every row bit-identical to a one-machine build); pass the same --batch-size to every worker\n",
			res.BatchSize, res.ComputedRows)
	}
	fmt.Fprintf(g.stdout, "measured here: %s (d_model %d), %d tokens per layer, %d threads (%s), model load %s\n",
		displayPath(res.Model), m.DModel, res.MeasuredTokens, res.Threads, res.BLAS, fmtSeconds(load))
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tdtype\tbytes/token\tdisk\tshards\ttokens/s\ttime (1 worker)\ttime per worker\t")
	for _, p := range res.Plans {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%.0f\t%s\t%s\t\n", p.Layer, p.DType, p.BytesPerToken, humanBytes(p.Bytes), p.Shards,
			p.TokensPerSecond, fmtSeconds(p.SecondsTotal), fmtSeconds(p.SecondsPerWorker))
	}
	tw.Flush()
	if len(res.Plans) > 1 {
		fmt.Fprintf(g.stdout, "disk for all: %s\n", humanBytes(res.BytesTotal))
	}
	if res.LayerSet != nil {
		fmt.Fprintf(g.stdout, "layer set %s: one pass to layer %d per batch caches every layer; the times above are the whole set's, not per layer\n",
			actcache.LayersText(res.LayerSet), res.LayerSet[len(res.LayerSet)-1])
	}
	return nil
}

// fmtSeconds prints a duration rounded for reading: 850ms, 42s, 3m20s, 5h12m.
func fmtSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
