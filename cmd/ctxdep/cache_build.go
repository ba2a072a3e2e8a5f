package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/bpe"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

func newCacheCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Build, merge, verify and plan activation caches",
		Long: `Activation caches hold x = blocks.L.ln2.hook_normalized and
y = blocks.L.hook_mlp_out per token for one layer (see ` + "`ctxdep cache build --help`" + `);
a layer set (cache build --layers) holds one such cache per layer, from one
forward pass.

On one machine: ctxdep cache build --tokens rows.npy --out DIR.

On a cluster, in four steps:
  1. ctxdep tokenize --data CORPUS --out rows.npy        (once)
  2. ctxdep cache build --tokens rows.npy --out DIR --shard i/N
                                                          (on N workers; the
     index and count default from a Slurm array or a Kubernetes indexed Job)
  3. ctxdep cache merge DIR                               (once, when all are done)
  4. ctxdep cache verify DIR                              (any time: re-hashes
     every shard, names the workers to rerun)
Size N first with ctxdep cache plan --n-tokens T --workers N.`,
	}
	cmd.AddCommand(newCacheBuildCmd(g), newCacheMergeCmd(g), newCacheVerifyCmd(g), newCachePlanCmd(g))
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
	shard     string
	shardN    int
	layers    string
	storeY    bool
	dataOptions
}

func newCacheBuildCmd(g *globalOptions) *cobra.Command {
	o := &cacheBuildOptions{}
	cmd := &cobra.Command{
		Use:   "build (--tokens FILE.npy | --data PATH) --out DIR",
		Short: "Run GPT-2 to block L and cache x = ln2.hook_normalized and y = hook_mlp_out",
		Long: `Runs the TransformerLens-processed GPT-2 over token rows up to block L
(--layer) and stores, per token, x = blocks.L.ln2.hook_normalized (the
transcoder's input) and y = blocks.L.hook_mlp_out (its target).

Input: --tokens FILE.npy, an int32 or int64 array of shape [rows, T] used
verbatim (rows from ctxdep tokenize, or numpy); or --data PATH, a text corpus
streamed, shuffled and tokenized exactly as ` + "`ctxdep tokenize`" + ` does (same flags),
overlapped with the forward pass. --n-tokens stops after that many tokens,
rounded up to whole rows (an input that holds fewer is cached whole, with a
note; with --data the rows are counted first, by tokenizing without the
model); without it the build caches every row (with
--data, the whole corpus, counted as it streams: the manifest records the
rows found, and a rerun reads the corpus again from its start).

Batches: rows are run through the model --batch-size at a time, on one
grid from the build's row 0 (rows [k·B, k·B+B)), however the build is cut
into shards or workers or resumed; a worker or shard whose rows start or
end inside a batch computes the whole batch and keeps its rows. This makes
every row bit-identical to a single-machine build's, on every BLAS kernel
and thread count (kernels round a row by how many rows share its GEMM).
--batch-size is therefore part of the cache's identity: a rerun or a worker
with another --batch-size is refused. A --batch-size or --sequences-per-shard
whose buffers would need more than the machine's memory (or the memory limit
of the process's cgroup: a Slurm job's --mem, a pod's limit) is refused. On the
GPU, identical bits also need the same GPU model and cuBLAS version on every
worker.

Output in --out DIR: manifest.json (format ctxdep-activation-cache, version
1, with the paths and SHA-256 of model, transcoder and data) and
shard-NNNNN.safetensors files, each with tokens I32 [S_i, T], x and y
[S_i, T, C] in --dtype, and with --with-acts the transcoder's sparse
activations as CSR (acts_indptr I64, acts_indices I32, acts_values F32).
Python reads them with safetensors.torch.load_file.

Layer sets: --layers LIST (2,3 or 0-11 or all) caches several layers from
one forward pass per batch, to the deepest listed block: --out DIR/layer-LL/
for each layer, each a complete cache as above (every command and Python
reader works on it unchanged; fit, pinv-baseline, evaluate, report and
inspect-cache take --cache DIR with --layer L or --layers LIST), and
DIR/layers.json (format ctxdep-layer-set, version 1: the layers, the token
source and the model, with their SHA-256). A set's shards also hold scale
F32 [S_i, T], blocks.L.ln2.hook_scale (4 bytes per token). Caching twelve
layers costs one pass to the deepest plus writing them; resume, --shard,
merge and verify work on the set as on one cache.

Without y: --store-y=false stores x (and the acts) only, about half the disk.
The manifest says y_recomputed, and ctxdep computes y = MLP_L(x), the
layer's processed MLP applied to the stored x, whenever it reads the cache
(in the build's batches: the stored y's bits when shards hold whole batches
and x is float32). Python readers must do the same.

A shard appears only when complete. Re-running the same command into the
same DIR resumes: complete shards are kept (one that no longer matches the
hash its manifest recorded is rewritten). A DIR built with other inputs or
settings is refused and left untouched, as is a DIR that holds files that are
not a cache's (another command's output: choose a new or empty directory); a
--out that is a file is a usage error (exit 2). An interrupted build (Ctrl-C)
says how many shards it kept. --tokens files are read by offset,
a batch at a time, so they may be larger than memory.

Sharded builds (a cluster; tokenize once, then run this on N workers):
--shard i/N makes this process worker i of N (0 ≤ i < N). It caches rows
[⌊i·R/N⌋, ⌊(i+1)·R/N⌋) of the R rows (with --n-tokens: of the first rows
that hold that many tokens), computing at most two batches it shares with a
neighbour (see Batches), into the shared --out DIR as
wIIIII-of-NNNNN-shard-KKKKK.safetensors plus its own manifest
worker-IIIII-of-NNNNN.json; workers never touch each other's files, and a
rerun worker resumes. Every worker must run with the same inputs and
settings (model, layers, --tokens, --n-tokens, --batch-size,
--sequences-per-shard, --dtype, transcoder): a worker whose flags differ from
those its siblings' manifests in DIR record is refused before any work. When all N are done, ` + "`ctxdep cache merge DIR`" + ` checks
them and writes DIR/manifest.json; then fit, inspect-cache, evaluate and
report read DIR as any cache. Sharding needs --tokens (` + "`ctxdep tokenize`" + ` first).

Without --shard the worker comes from the environment:
  Slurm job array   i = $SLURM_ARRAY_TASK_ID − $SLURM_ARRAY_TASK_MIN (min 0
                    when unset), N = $SLURM_ARRAY_TASK_COUNT, or
                    $SLURM_ARRAY_TASK_MAX − min + 1 (use --array=0-(N−1))
  Kubernetes        i = $JOB_COMPLETION_INDEX (Indexed Job), N = --shard-count
                    or $CTXDEP_SHARD_COUNT (set it to the Job's completions)
so one command line runs under either. --shard none builds on this machine
alone whatever the environment says (e.g. a Slurm array over layers).

With --device cuda (a build with CUDA, make build-cuda) the forward pass and
the encoder run on the GPU, x, y and the activations being copied back for
writing; --tf32 lets its GEMMs use TF32 tensor cores.

Exit status: 0 done, 1 runtime error, 2 usage error (bad --shard, or a
worker index or count from the environment that does not make sense),
130 interrupted (resumable).`,
		Example: `  ctxdep cache build --model testdata/tiny-gpt2 --layer 1 \
      --tokens testdata/tokens/tiny-int64.npy --out /tmp/cache
  ctxdep cache build --layer 8 --tokens owt.npy --n-tokens 1000000 --with-acts --out cache-l8
  ctxdep cache build --layers all --tokens owt.npy --n-tokens 1000000 --with-acts --store-y=false --out cache-all

  # worker 2 of 4 (or leave --shard out in a Slurm array --array=0-3)
  ctxdep cache build --layer 8 --tokens owt.npy --out /shared/cache-l8 --shard 2/4
  ctxdep cache merge /shared/cache-l8`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := layerFlags(cmd, o.layers); err != nil {
				return err
			}
			if o.data == "" {
				noteUnusedDataFlags(g, cmd.Flags(), "seed")
			}
			return runCacheBuild(cmd.Context(), g, o, os.Getenv, cmd.Flags().Changed("shard-count"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.tokens, "tokens", "", "token rows: .npy of int32 or int64, shape [rows, T]")
	f.StringVar(&o.data, "data", "", "text corpus, streamed and tokenized as ctxdep tokenize does (to its end, or --n-tokens)")
	f.StringVar(&o.out, "out", "", "output cache directory (created; resumed when it holds an interrupted build)")
	f.Int64Var(&o.nTokens, "n-tokens", 0, "stop after this many tokens, rounded up to whole rows; an input that holds fewer is cached whole, with a note (default: all rows, or the whole corpus)")
	f.IntVar(&o.batchSize, "batch-size", 32, "rows per forward pass; part of the cache's identity (use the same on every worker and rerun)")
	f.IntVar(&o.perShard, "sequences-per-shard", 128, "rows per shard file")
	f.StringVar(&o.dtype, "dtype", "float32", "storage type of x and y: float32 or float16")
	f.BoolVar(&o.withActs, "with-acts", false, "also store the layer's transcoder activations of x (sparse CSR)")
	f.BoolVar(&o.storeY, "store-y", true, "store y; with --store-y=false only x (and acts) are stored, and every reader\ncomputes y = MLP_L(x) with the model (half the disk; Python readers must do the same)")
	f.StringVar(&o.layers, "layers", "", "cache several layers from one forward pass, into --out DIR/layer-LL/ each:\ne.g. 2,3 or 0-11 or all (instead of --layer)")
	f.StringVar(&o.shard, "shard", "", "run as worker i of N of a sharded build: i/N, or i with --shard-count; none: never sharded\n(default from $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT or $JOB_COMPLETION_INDEX)")
	f.IntVar(&o.shardN, "shard-count", 0, "worker count N for --shard i or $JOB_COMPLETION_INDEX (default $CTXDEP_SHARD_COUNT)")
	addDataFlags(f, &o.dataOptions, "seed")
	addJSONFlag(cmd, g)
	return cmd
}

func runCacheBuild(ctx context.Context, g *globalOptions, o *cacheBuildOptions, getenv func(string) string, countSet bool) (err error) {
	defer removeIfNewAndEmpty(o.out)(&err)
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
	}
	if err := checkBuildOut(o.out, o.layers != ""); err != nil {
		return err
	}
	if o.data != "" {
		if err := o.dataOptions.check(); err != nil {
			return err
		}
	}
	shard, err := actcache.ResolveWorker(o.shard, o.shardN, countSet, getenv)
	if err != nil {
		if errors.Is(err, actcache.ErrWorkerSpec) {
			err = usageError{err}
		}
		return err
	}
	if shard != nil && o.data != "" {
		return usagef("worker %d of %d (%s): a sharded build reads a token file, not --data, with or without --n-tokens; run `ctxdep tokenize --data %s --out rows.npy` once, then `cache build --tokens rows.npy` on each worker (or pass --shard none to build on this machine alone)", shard.Index, shard.Count, shard.Source, o.data)
	}
	// The model's shapes, to check the flags against before any work.
	mc, err := g.modelConfig()
	if err != nil {
		return err
	}
	layers := []int{g.layer}
	if o.layers != "" {
		if layers, err = parseLayerList(o.layers, mc.NLayer); err != nil {
			return err
		}
	}
	// checkSize checks rows of t tokens against the model's context and
	// the batch's and shard's buffers against the machine's memory.
	checkSize := func(t int) error {
		if t > mc.NCtx {
			if o.data != "" {
				return o.dataOptions.checkContext(mc.NCtx)
			}
			return fmt.Errorf("rows of %d tokens are longer than the model's context of %d", t, mc.NCtx) // the token file's fault
		}
		return checkMemory(t, buildBuffers(o.batchSize, o.perShard, mc.DModel, mc.DMLP, len(layers), g.backend.cpu())...)
	}
	// A layer set's caches also hold each token's ln2.hook_scale, for
	// ctxdep connections (4 bytes per token).
	opts := cachebuild.Options{NoY: !o.storeY, WithScale: o.layers != "", BatchSize: o.batchSize, PerShard: o.perShard, DType: o.dtype, Version: "ctxdep " + version}
	if o.data != "" {
		t := o.maxLength
		if err := checkSize(t); err != nil {
			return err
		}
		n := -1 // the whole corpus, counted as it streams
		if o.nTokens > 0 {
			n = int(min(ceilDiv(o.nTokens, int64(t)), math.MaxInt32))
			// --n-tokens is a cap: a corpus that ends first is cached whole
			// (as a token file is, and as tokenize --n-rows stops). The
			// rows are counted first, tokenizing without the model (some
			// thousand times faster than the forward pass), so that the
			// manifest records the rows the build will find.
			found, err := countTextRows(ctx, o.data, o.dataOptions, n)
			if err != nil {
				return err
			}
			if found < n {
				g.notef("note: --n-tokens %d asks for %d rows of %d tokens; %s holds %d (%d tokens): caching all of them", o.nTokens, n, t, o.data, found, found*t)
				n = found
			}
		}
		src, err := openText(o.data, o.dataOptions)
		if err != nil {
			return err
		}
		defer src.Close()
		opts.Rows = cachebuild.NewStreamRows(src.Next, t, n)
		opts.DataKind, opts.DataProv = "text", src.prov
		opts.DataSet = map[string]string{"shuffle_buffer": fmt.Sprint(o.shuffleBuffer), "seed": fmt.Sprint(o.seed),
			"max_length": fmt.Sprint(t), "format": o.format, "tokenizer": tokenizerName(o.tokenizer)}
		opts.DataCounts = src.counts
	} else {
		rows, err := npy.OpenRows(o.tokens)
		if err != nil {
			return err
		}
		defer rows.Close()
		if err := checkSize(rows.RowLen()); err != nil {
			return err
		}
		if first := make([]int32, rows.RowLen()); rows.NumRows() > 0 && rows.Read(first, 0, 1) == nil && first[0] != bpe.EOT {
			g.notef("note: row 0 of %s starts with token %d, not BOS (%d) as the notebook's rows (tokenize_and_concatenate) do; the cache takes the rows as they are", o.tokens, first[0], bpe.EOT)
		}
		opts.Rows = rows
		if opts.DataProv, err = provenance.Hash(o.tokens); err != nil {
			return err
		}
		opts.DataKind = "tokens-npy"
		if o.nTokens > 0 {
			want := ceilDiv(o.nTokens, int64(rows.RowLen()))
			if want > int64(rows.NumRows()) {
				g.notef("note: --n-tokens %d asks for %d rows of %d tokens; %s holds %d (%d tokens): caching all of them", o.nTokens, want, rows.RowLen(), o.tokens, rows.NumRows(), rows.NumRows()*rows.RowLen())
			}
			opts.NRows = int(min(want, int64(rows.NumRows())))
		}
	}
	t := opts.Rows.RowLen()
	total := opts.NRows
	if total == 0 {
		total = opts.Rows.NumRows() // -1: the whole corpus, not counted yet
	}
	if shard != nil {
		if shard.Count > total {
			return usagef("%d workers (%s) for %d rows would leave workers without rows: use at most %d", shard.Count, shard.Source, total, total)
		}
		opts.Shard = &cachebuild.Shard{Index: shard.Index, Count: shard.Count}
		_, total = actcache.Worker{Index: shard.Index, Count: shard.Count, TotalRows: total}.Range()
	}
	m, modelProv, err := g.loadModelThrough(layers...)
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := checkLayer(m, l); err != nil {
			return err
		}
	}
	opts.Model, opts.ModelProv = m, modelProv
	tcs := make([]*transcoder.Transcoder, len(layers))
	for i, l := range layers {
		out := o.out
		if o.layers != "" {
			out = actcache.LayerDir(o.out, l)
		}
		opts.Layers = append(opts.Layers, cachebuild.Layer{Layer: l, Out: out})
		if o.withActs {
			tc, tp, _, err := g.loadTranscoder(l, m.DModel)
			if err != nil {
				return err
			}
			tcs[i], opts.Layers[i].Transcoder, opts.Layers[i].TransProv = tc, tc, &tp
		}
	}
	if o.layers != "" {
		// Written first, so that every worker and rerun finds the set.
		if err := actcache.CreateLayerSet(o.out, actcache.LayerSet{Layers: layers, Model: modelProv,
			Data: actcache.LayerSetData{Kind: opts.DataKind, File: opts.DataProv}, CreatedBy: opts.Version}); err != nil {
			return err
		}
	}
	pass, free, err := g.backend.pass(m, layers, tcs, o.batchSize, t)
	if err != nil {
		return err
	}
	defer free()
	// Page-locked memory cannot be swapped out: a GPU build takes at most
	// half of what this process may use, the rest of its batches'
	// buffers are ordinary memory (with a note).
	opts.Pass, opts.PinnedLimit = pass, machineMemory().bytes/2
	bar := progress.New(g.stderr, "cache build", max(int64(total*opts.Rows.RowLen()), 0), "tokens", g.quiet)
	if shard != nil {
		bar.Logf("cache build: worker %d of %d (%s)", shard.Index, shard.Count, shard.Source)
	}
	opts.Progress = bar
	start := time.Now()
	mans, err := cachebuild.Build(ctx, opts)
	bar.Finish()
	switch {
	case err != nil && ctx.Err() != nil:
		if msg := resumeNote(opts.Layers, shard); msg != "" {
			fmt.Fprintf(g.stderr, "ctxdep: %s\n", msg) // before main's "ctxdep: interrupted"
		}
	case writeFailed(err):
		fmt.Fprintf(g.stderr, "ctxdep: the shards written so far are kept: once there is room, rerun the same command and it resumes\n")
	}
	if err != nil {
		return err
	}
	if o.layers == "" {
		return printBuildSummary(g, o.out, mans[0], shard, time.Since(start))
	}
	return printSetSummary(g, o.out, layers, mans, shard, time.Since(start))
}

// resumeNote says, after an interrupted build, how many complete shards
// each layer's cache keeps (its manifest lists them, with their hashes)
// and that the same command resumes from them: a rerun keeps every shard
// its manifest lists, and computes only the others. It is "" when no
// shard is complete, where there is nothing to resume from.
func resumeNote(layers []cachebuild.Layer, shard *actcache.WorkerSpec) string {
	lo, hi, total := -1, 0, 0
	for _, l := range layers {
		name := actcache.ManifestName
		if shard != nil {
			name = actcache.WorkerManifestName(shard.Index, shard.Count)
		}
		m, err := actcache.ReadManifestFile(filepath.Join(l.Out, name))
		if err != nil {
			return ""
		}
		n := len(m.Shards)
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
		total = 0 // unknown: the input is read to its end
		if !m.Data.ToEnd || m.Complete {
			total = (m.NSequences + m.SequencesPerShard - 1) / m.SequencesPerShard
		}
	}
	if hi == 0 {
		return ""
	}
	count := fmt.Sprint(lo)
	if lo != hi {
		count = fmt.Sprintf("%d to %d", lo, hi)
	}
	if total > 0 {
		count += fmt.Sprintf(" of %d", total)
	}
	where := layers[0].Out
	if len(layers) > 1 {
		where = fmt.Sprintf("each of the %d layers' caches in %s", len(layers), filepath.Dir(layers[0].Out))
		count += " shards"
	} else {
		count += " " + pluralWord(hi, "shard")
	}
	who := ""
	if shard != nil {
		who = fmt.Sprintf(" (worker %d of %d)", shard.Index, shard.Count)
	}
	again := ""
	if total == 0 {
		again = ", reading the input again from its start"
	}
	return fmt.Sprintf("%s%s keeps the %s completed before the interrupt: rerun the same command and it resumes from them%s", where, who, count, again)
}

// pluralWord returns noun, with an s unless n is 1.
func pluralWord(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// printSetSummary reports a layer set's build: one line per layer.
func printSetSummary(g *globalOptions, dir string, layers []int, mans []*actcache.Manifest, shard *actcache.WorkerSpec, el time.Duration) error {
	if g.json {
		doc := map[string]any{"dir": dir, "layers": layers, "manifests": mans, "seconds": el.Seconds()}
		if shard != nil {
			doc["worker"] = map[string]any{"index": shard.Index, "count": shard.Count, "source": shard.Source}
		}
		return json.NewEncoder(g.stdout).Encode(doc)
	}
	for i, m := range mans {
		fmt.Fprintf(g.stdout, "cache %s: %s\n", actcache.LayerDir(dir, layers[i]), cacheSummary(m))
	}
	if shard != nil {
		fmt.Fprintf(g.stdout, "worker %d of %d of the layer set %s (layers %s); once all %d workers are done: ctxdep cache merge %s\n",
			shard.Index, shard.Count, dir, actcache.LayersText(layers), shard.Count, dir)
	}
	return nil
}

func printBuildSummary(g *globalOptions, dir string, m *actcache.Manifest, shard *actcache.WorkerSpec, el time.Duration) error {
	if g.json {
		doc := map[string]any{"dir": dir, "manifest": m, "seconds": el.Seconds()}
		if shard != nil {
			doc["worker"] = map[string]any{"index": shard.Index, "count": shard.Count, "source": shard.Source}
		}
		return json.NewEncoder(g.stdout).Encode(doc)
	}
	if shard != nil {
		fmt.Fprintf(g.stdout, "worker %d of %d in %s: rows %d..%d, %s; once all %d workers are done: ctxdep cache merge %s\n",
			shard.Index, shard.Count, dir, m.Data.FirstRow, m.Data.FirstRow+m.NSequences-1, cacheSummary(m), shard.Count, dir)
		return nil
	}
	fmt.Fprintf(g.stdout, "cache %s: %s\n", dir, cacheSummary(m))
	return nil
}

// cacheSummary describes the cache m lists, as build and merge print it.
func cacheSummary(m *actcache.Manifest) string {
	return fmt.Sprintf("layer %d, %s × %d tokens = %d tokens, %s, %s, %s",
		m.Layer, plural(m.NSequences, "sequence"), m.ContextLength, m.NTokens, m.DType, plural(len(m.Shards), "shard"), humanBytes(m.Bytes()))
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

// checkBuildOut applies cache build's rules for --out before any work
// (nothing is loaded or made before they pass). --out must be a directory
// or a path where one can be made: a file there, or a file where a parent
// directory would be, is a usage error. An existing directory must be
// empty, a cache (which the build resumes or refuses by its own rules), or
// hold what a killed build left (its shards, its hidden temporary and
// lock files): one that holds anything else, another tool's output such
// as a fit's, is refused (exit 1, as an existing --out of the other
// commands is), so that a build never mixes its shards with other files.
// With --layers (set), --out is a layer set's directory: empty, or holding
// its layers.json, and each layer-LL in it a cache as above.
func checkBuildOut(out string, set bool) error {
	fi, err := os.Stat(filepath.Clean(out)) // "FILE/" names FILE
	if li, lerr := os.Lstat(filepath.Clean(out)); errors.Is(err, fs.ErrNotExist) && lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
		return usagef("--out %s is a symbolic link to a directory that does not exist: make its target, or choose another --out", out)
	}
	if err != nil {
		if err := checkOutParent(out); err != nil {
			return err // the nearest existing ancestor must be a directory, to make --out in
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("--out %s: %w", out, err)
	}
	if !fi.IsDir() {
		what := "is a file"
		if !fi.Mode().IsRegular() {
			what = "exists and is not a directory"
		}
		return usagef("--out %s %s: cache build writes a directory of shards; give a new or empty directory, or a cache to resume", out, what)
	}
	dirs := []string{out}
	if set {
		if !actcache.IsLayerSet(out) {
			entries, err := os.ReadDir(out)
			if err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			var names []string
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), ".") { // lock and temporary files aside
					names = append(names, e.Name())
				}
			}
			if len(names) > 0 {
				return fmt.Errorf("--out %s exists and holds files but no layer set (%s): cache build --layers writes only into a new or empty directory, or a layer set to resume; choose an empty or new directory", out, fileList(names))
			}
			return nil
		}
		dirs = dirs[:0]
		entries, err := os.ReadDir(out)
		if err != nil {
			return fmt.Errorf("--out %s: %w", out, err)
		}
		for _, e := range entries {
			var l int
			if n, _ := fmt.Sscanf(e.Name(), "layer-%d", &l); n == 1 && e.Name() == actcache.LayerDirName(l) && e.IsDir() {
				dirs = append(dirs, filepath.Join(out, e.Name()))
			}
		}
	} else if actcache.IsLayerSet(out) {
		if s, err := actcache.ReadLayerSet(out); err == nil {
			return fmt.Errorf("--out %s is a layer set of layers %s: resume it with --layers %s, or choose another --out for a cache of one layer", out, actcache.LayersText(s.Layers), strings.ReplaceAll(actcache.LayersText(s.Layers), " ", ""))
		}
	}
	for _, dir := range dirs {
		foreign, err := actcache.ForeignFiles(dir)
		if err != nil {
			return fmt.Errorf("--out %s: %w", out, err)
		}
		if len(foreign) > 0 {
			what := "--out " + dir
			if dir != out {
				what = fmt.Sprintf("%s, in the layer set --out %s,", dir, out)
			}
			if actcache.IsCacheDir(dir) {
				return fmt.Errorf("%s is an activation cache, but also holds files that are not a cache's (%s): move them out of it to resume or rebuild the cache there, or choose an empty or new directory", what, fileList(foreign))
			}
			return fmt.Errorf("%s exists and holds files that are not an activation cache's (%s): cache build writes only into a new or empty directory, or one that holds a cache to resume; choose an empty or new directory", what, fileList(foreign))
		}
	}
	return nil
}

// fileList names files in a message: the first three, and a count of the
// others.
func fileList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// countTextRows returns how many rows of the text corpus at path the
// stream yields, up to want: a second stream over the same documents, in
// the same order, tokenized but not run through the model.
func countTextRows(ctx context.Context, path string, o dataOptions, want int) (int, error) {
	src, err := openText(path, o)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	row := make([]int32, o.maxLength)
	for n := 0; n < want; n++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := src.Next(row); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return 0, err
		}
	}
	return want, nil
}
