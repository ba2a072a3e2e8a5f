package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

func newCacheCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Build activation caches",
	}
	cmd.AddCommand(newCacheBuildCmd(g))
	return cmd
}

type cacheBuildOptions struct {
	tokens    string
	data      string
	out       string
	nTokens   int64
	batchSize int
	perShard  int
	dtype     string
	withActs  bool
	dataOptions
}

func newCacheBuildCmd(g *globalOptions) *cobra.Command {
	o := &cacheBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build --tokens FILE.npy --out DIR",
		Short: "Run GPT-2 to block L and cache x = ln2.hook_normalized and y = hook_mlp_out",
		Long: `Runs the TransformerLens-processed GPT-2 over token rows up to block L
(--layer) and stores, per token, x = blocks.L.ln2.hook_normalized (the
transcoder's input) and y = blocks.L.hook_mlp_out (its target).

Input: --tokens FILE.npy, an int32 or int64 array of shape [rows, T] used
verbatim (rows from ctxdep tokenize, or numpy); or --data PATH, a text corpus
streamed, shuffled and tokenized exactly as ` + "`ctxdep tokenize`" + ` does (same flags),
overlapped with the forward pass. --n-tokens stops after that many tokens,
rounded up to whole rows (required with --data).

Output in --out DIR: manifest.json (format ctxdep-activation-cache, version
1, with the paths and SHA-256 of model, transcoder and data) and
shard-NNNNN.safetensors files, each with tokens I32 [S_i, T], x and y
[S_i, T, C] in --dtype, and with --with-acts the transcoder's sparse
activations as CSR (acts_indptr I64, acts_indices I32, acts_values F32).
Python reads them with safetensors.torch.load_file.

A shard appears only when complete. Re-running the same command into the
same DIR resumes: complete shards are kept. A DIR built with other inputs
or settings is refused and left untouched.`,
		Example: `  ctxdep cache build --model testdata/tiny-gpt2 --layer 1 \
      --tokens testdata/tokens/tiny-int64.npy --out /tmp/cache
  ctxdep cache build --layer 8 --tokens owt.npy --n-tokens 1000000 --with-acts --out cache-l8`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheBuild(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tokens, "tokens", "", "token rows: .npy of int32 or int64, shape [rows, T]")
	f.StringVar(&o.data, "data", "", "text corpus, streamed and tokenized as `ctxdep tokenize` does (needs --n-tokens)")
	f.StringVar(&o.out, "out", "", "output cache directory (created; resumed when it holds an interrupted build)")
	f.Int64Var(&o.nTokens, "n-tokens", 0, "stop after this many tokens, rounded up to whole rows (default: all rows)")
	f.IntVar(&o.batchSize, "batch-size", 32, "rows per forward pass")
	f.IntVar(&o.perShard, "sequences-per-shard", 128, "rows per shard file")
	f.StringVar(&o.dtype, "dtype", "float32", "storage type of x and y: float32 or float16")
	f.BoolVar(&o.withActs, "with-acts", false, "also store the layer's transcoder activations of x (sparse CSR)")
	addDataFlags(f, &o.dataOptions, "seed")
	addJSONFlag(cmd, g)
	return cmd
}

func runCacheBuild(ctx context.Context, g *globalOptions, o *cacheBuildOptions) error {
	switch {
	case o.out == "":
		return usagef("cache build needs --out DIR")
	case o.data != "" && o.tokens != "":
		return usagef("give either --tokens or --data, not both")
	case o.data == "" && o.tokens == "":
		return usagef("cache build needs --tokens FILE.npy or --data PATH")
	case o.batchSize <= 0 || o.perShard <= 0 || o.nTokens < 0:
		return usagef("--batch-size, --sequences-per-shard and --n-tokens must be positive")
	case o.dtype != "float32" && o.dtype != "float16":
		return usagef("--dtype %q: want float32 or float16", o.dtype)
	case o.data != "" && o.nTokens == 0:
		return usagef("--data needs --n-tokens N: the corpus is streamed, and its row count is not known in advance")
	}
	opts := cachebuild.Options{Out: o.out, BatchSize: o.batchSize, PerShard: o.perShard, DType: o.dtype, Version: "ctxdep " + version}
	if o.data != "" {
		src, err := openText(o.data, o.dataOptions)
		if err != nil {
			return err
		}
		defer src.Close()
		t := o.maxLength
		opts.Rows = cachebuild.NewStreamRows(src.Next, t, int((o.nTokens+int64(t)-1)/int64(t)))
		opts.DataKind, opts.DataProv = "text", src.prov
		opts.DataSet = map[string]string{"shuffle_buffer": fmt.Sprint(o.shuffleBuffer), "seed": fmt.Sprint(o.seed),
			"max_length": fmt.Sprint(t), "format": o.format, "tokenizer": tokenizerName(o.tokenizer)}
		opts.DataCounts = src.counts
	} else {
		tokens, shape, err := npy.ReadInt32(o.tokens)
		if err != nil {
			return err
		}
		if len(shape) != 2 || shape[0] == 0 || shape[1] == 0 {
			return fmt.Errorf("%s: token array has shape %v, want [rows, T] with rows, T > 0", o.tokens, shape)
		}
		opts.Rows = cachebuild.Int32Rows{Data: tokens, T: shape[1]}
		if opts.DataProv, err = provenance.Hash(o.tokens); err != nil {
			return err
		}
		opts.DataKind = "tokens-npy"
		if o.nTokens > 0 {
			opts.NRows = int(min((o.nTokens+int64(shape[1])-1)/int64(shape[1]), int64(shape[0])))
		}
	}
	m, modelProv, err := g.loadModel()
	if err != nil {
		return err
	}
	if g.layer < 0 || g.layer >= m.NLayer {
		return usagef("--layer %d is out of range: the model has layers 0..%d", g.layer, m.NLayer-1)
	}
	opts.Model, opts.ModelProv, opts.Layer = m, modelProv, g.layer
	if o.withActs {
		tc, tp, _, err := g.loadTranscoder(g.layer, m.DModel)
		if err != nil {
			return err
		}
		opts.Transcoder, opts.TransProv = tc, &tp
	}
	total := opts.NRows
	if total == 0 {
		total = opts.Rows.NumRows()
	}
	bar := progress.New(g.stderr, "cache build", int64(total*opts.Rows.RowLen()), "tokens", g.quiet)
	opts.Progress = bar
	start := time.Now()
	man, err := cachebuild.Build(ctx, opts)
	bar.Finish()
	if err != nil {
		return err
	}
	return printBuildSummary(g, o.out, man, time.Since(start))
}

func printBuildSummary(g *globalOptions, dir string, m *actcache.Manifest, el time.Duration) error {
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"dir": dir, "manifest": m, "seconds": el.Seconds()})
	}
	var bytes int64
	for _, s := range m.Shards {
		bytes += s.Bytes
	}
	fmt.Fprintf(g.stdout, "cache %s: layer %d, %d sequences × %d tokens = %d tokens, %s, %d shards, %s\n",
		dir, m.Layer, m.NSequences, m.ContextLength, m.NTokens, m.DType, len(m.Shards), humanBytes(bytes))
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
