package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

type fitOptions struct {
	cache  string
	data   string
	out    string
	resume bool
	layers string
	cfg    midcoder.Config
	dataOptions
}

func newFitCmd(g *globalOptions) *cobra.Command {
	o := &fitOptions{}
	cmd := &cobra.Command{
		Use:   "fit --cache DIR --out DIR",
		Short: "Fit the midcoder: mid vectors W_mid such that the MLP of block L applied to acts @ W_mid + b_mid reproduces y",
		Long: `Fits the notebook's midcoder: trainable W_mid [F, C] and b_mid [C],
mid = acts @ W_mid + b_mid, out = act(mid @ W_in + b_in) @ W_out + b_out with the
block's frozen (TransformerLens-processed) MLP, loss = mean (out − y)², loss_norm =
loss / mean(y²); AdamW (betas 0.9, 0.999, eps 1e-8, decoupled weight decay) and
CosineAnnealingLR stepped once per epoch; epochs = floor(train_tokens / (T·B·
steps_per_epoch)) + 1 (a fit of more than 2^53 tokens in all is refused). Per-epoch
means of loss and loss_norm are logged with the lr after the scheduler step, as the
notebook prints them.

Data: --cache DIR, an activation cache (ctxdep cache build) of the same layer
and model (of a layer set, cache build --layers: the one --layer names; with
--layers, each in turn, into --out DIR/layer-LL/; a sweep cut short continues
with --resume: finished layers are skipped, the interrupted one resumes, the
rest start). Sequences are used in cache
order, starting again from the first when the run needs more than the cache
holds (it says so); a batch is of distinct sequences, so --batch-size is at
most the cache's count. Stored activations are used when their transcoder's
SHA-256 matches; otherwise x is encoded shard by shard as it is read. Or
--data PATH, a text corpus streamed as ` + "`ctxdep tokenize`" + ` does (the notebook's
pipeline: shuffled OpenWebText, rows of 128 tokens): x and y come from the model's
forward pass batch by batch, computed while the previous batch trains.

--init kaiming draws W_mid ~ U(−√(6/C), √(6/C)) as torch's kaiming_uniform_ does,
but from ctxdep's own seeded generator: torch's random stream cannot be reproduced,
so runs match the notebook in distribution, not bit for bit. --init zeros is exact.
--init pinv starts from the pinv baseline (see ctxdep pinv-baseline --help).

Output in --out DIR: midcoder.safetensors (W_mid F32 [F, C], b_mid F32 [C];
settings and the SHA-256 of model, transcoder and cache in its metadata) and
history.csv (epoch,loss,loss_norm,lr). A checkpoint is written at each epoch end;
after an interruption (Ctrl-C) --resume continues from it to the same result as an
uninterrupted run (on the CPU, or on the GPU with --deterministic: by default the
GPU's gradient scatter sums with float atomics, so its runs vary in the last bits).

With --device cuda (a build with CUDA, make build-cuda) each step runs on the GPU:
from --data, token ids go in and the forward pass, the encoder and the midcoder
step stay there; from --cache, x and y go in. Only the losses come back, and the
parameters at each checkpoint. Exact float32 by default; --tf32 is ~3x faster.

The notebook's run: --batch-size 64 --steps-per-epoch 10 --train-tokens 100000.`,
		Example: `  ctxdep fit --cache cache-l8 --out fit-l8 --batch-size 64 --steps-per-epoch 10 --train-tokens 100000
  ctxdep fit --cache /tmp/cache --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders \
      --layer 1 --batch-size 2 --steps-per-epoch 3 --train-tokens 200 --out /tmp/fit
  ctxdep fit --cache cache-all --layers all --out fit-all    # fit-all/layer-00/ … layer-11/`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer removeIfNewAndEmpty(o.out)(&err) // with --layers, DIR above the layers' own
			if o.layers != "" && o.cache == "" {
				return usagef("fit --layers fits the layers of a layer set: give --cache SET (cache build --layers)")
			}
			if o.data == "" {
				noteUnusedDataFlags(g, cmd.Flags(), "data-seed")
			}
			if o.layers != "" && o.out == "" {
				return usagef("fit needs --out DIR") // before the loop joins "" and layer-LL
			}
			if err := actcache.CheckOutside("--out "+o.out, o.out); err != nil {
				return err // as the user gave it, not its layer-LL
			}
			return g.withLayers(cmd, o.layers, o.cache, func(layerSet bool, layer int) error {
				lo := *o
				if o.layers != "" {
					lo.out = filepath.Join(o.out, actcache.LayerDirName(layer))
					// A sweep resumed with --resume: layers it never reached
					// start afresh (those it finished are skipped in runFit).
					if o.resume && !exists(filepath.Join(lo.out, midcoder.CheckpointFile)) && !exists(filepath.Join(lo.out, midcoder.ResultFile)) {
						lo.resume = false
					}
				}
				return runFit(cmd.Context(), g, &lo, layerSet)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cache, "cache", "", "activation cache directory (ctxdep cache build)")
	f.StringVar(&o.data, "data", "", "stream a text corpus instead of a cache: x, y computed batch by batch by the model (tokenize's flags apply)")
	f.StringVar(&o.out, "out", "", "output directory (never an activation cache or inside one)")
	f.BoolVar(&o.resume, "resume", false, "continue an interrupted fit from --out's checkpoint (same flags and inputs)")
	f.IntVar(&o.cfg.BatchSize, "batch-size", 32, "sequences per step (B)")
	f.IntVar(&o.cfg.StepsPerEpoch, "steps-per-epoch", 10, "optimizer steps per epoch")
	f.Int64Var(&o.cfg.TrainTokens, "train-tokens", 1000000, "tokens that set the number of epochs")
	f.Float64Var(&o.cfg.LR, "lr", 1e-3, "AdamW learning rate")
	f.Float64Var(&o.cfg.WeightDecay, "weight-decay", 1e-3, "AdamW decoupled weight decay")
	f.Uint64Var(&o.cfg.Seed, "init-seed", 42, "seed of the kaiming initialisation")
	deprecatedAlias(f, "seed", "init-seed", func(name string) { f.Uint64Var(&o.cfg.Seed, name, 42, "") })
	f.StringVar(&o.cfg.Init, "init", "kaiming", "initial W_mid: kaiming, zeros or pinv")
	f.StringVar(&o.cfg.Act, "act", "relu", "MLP activation the midcoder trains through: relu (the notebook's) or gelu_new")
	addDataFlags(f, &o.dataOptions, "data-seed")
	addLayersFlag(cmd, &o.layers, "--cache", "--out DIR gets DIR/layer-LL/ per layer")
	addLayersJSONFlag(cmd, g)
	return cmd
}

func runFit(ctx context.Context, g *globalOptions, o *fitOptions, layerSet bool) (err error) {
	defer removeIfNewAndEmpty(o.out)(&err)
	act, err := midcoder.ParseActivation(o.cfg.Act)
	switch {
	case err != nil:
		return usagef("--act %q: want relu or gelu_new", o.cfg.Act)
	case o.out == "":
		return usagef("fit needs --out DIR")
	case (o.cache == "") == (o.data == ""):
		return usagef("fit needs either --cache DIR or --data PATH")
	case o.cfg.Init != "kaiming" && o.cfg.Init != "zeros" && o.cfg.Init != "pinv":
		return usagef("--init %q: want kaiming, zeros or pinv", o.cfg.Init)
	}
	if err := actcache.CheckOutside("--out "+o.out, o.out); err != nil {
		return err
	}
	if err := checkOutDir(o.out, "fit", midcoder.ResultFile+", "+midcoder.HistoryFile+" and checkpoints"); err != nil {
		return err
	}
	if o.data != "" {
		if err := o.dataOptions.check(); err != nil {
			return err
		}
	}
	var c *actcache.Cache
	if o.cache != "" {
		if c, err = g.openCacheAt(o.cache, layerSet); err != nil {
			return err
		}
		o.cfg.Layer, o.cfg.ContextLength = c.Manifest.Layer, c.Manifest.ContextLength
	} else {
		o.cfg.Layer, o.cfg.ContextLength = g.layer, o.maxLength
	}
	if err := checkFitSize(g, o, c); err != nil {
		return err
	}
	need := gpt2.Through(o.cfg.Layer) // the forward pass over the text
	if c != nil {
		need = gpt2.MLP(o.cfg.Layer) // the cache holds x and y
	}
	model, modelProv, err := g.loadModelFor(need)
	if err != nil {
		return err
	}
	if err := checkLayer(model, o.cfg.Layer); err != nil {
		return err
	}
	if c != nil {
		m := c.Manifest
		if err := c.CheckModel(modelProv); err != nil {
			return err
		}
		if m.DModel != model.DModel {
			return fmt.Errorf("the cache %s has d_model %d, the model %d", o.cache, m.DModel, model.DModel)
		}
	}
	tc, tcProv, _, err := g.loadTranscoder(o.cfg.Layer, model.DModel)
	if err != nil {
		return err
	}
	prov := midcoder.Provenance{Model: modelProv, Transcoder: tcProv}
	useStored := false
	var text *textRows
	if c != nil {
		if prov.Data, err = provenance.Hash(filepath.Join(c.Dir, actcache.ManifestName)); err != nil {
			return err
		}
		prov.DataKind = "cache"
		useStored = c.Manifest.StoresActsOf(tcProv) && g.backend.cpu()
	} else {
		if text, err = openText(o.data, o.dataOptions); err != nil {
			return err
		}
		defer text.Close()
		prov.Data, prov.DataKind = text.prov, fmt.Sprintf("text (shuffle buffer %d, seed %d, max length %d, tokenizer %s)", o.shuffleBuffer, o.seed, o.maxLength, tokenizerName(o.tokenizer))
	}
	meta := midcoder.Meta{Layer: o.cfg.Layer, DModel: model.DModel, DSAE: tc.DSAE, Method: "fit", Config: o.cfg, Provenance: prov, CreatedBy: "ctxdep " + version}
	params := midcoder.NewParams(tc.DSAE, model.DModel)
	job := &midcoder.Job{Config: o.cfg, Dir: o.out, Meta: meta, Key: midcoder.Key(o.cfg, prov),
		Notice: func(msg string) { g.notef("fit: %s", msg) }}
	if err := job.Check(o.resume); err != nil {
		// A sweep (--layers) resumed after an interruption: the layers it
		// finished are skipped, the one it was fitting resumes.
		if o.layers != "" && errors.Is(err, midcoder.ErrComplete) && job.Finished() {
			g.notef("fit: layer %d is already fitted with these settings in %s: skipped", o.cfg.Layer, o.out)
			// Its history, as its fit printed it: the sweep's output
			// (--json's results) holds every layer.
			meta, err := midcoder.ReadMeta(filepath.Join(o.out, midcoder.ResultFile))
			if err != nil {
				return err
			}
			return printHistory(g, meta.History)
		}
		if o.layers != "" && errors.Is(err, midcoder.ErrFinished) {
			// Most likely an interrupted sweep run again.
			err = fmt.Errorf("%w; to continue an interrupted sweep, pass --resume: the layers already fitted with these settings are skipped", err)
		}
		return err // before the initialisation's work
	}
	switch o.cfg.Init {
	case "kaiming":
		params.KaimingUniform(o.cfg.Seed)
	case "pinv":
		p, sp, err := analysis.PinvMidcoder(model, o.cfg.Layer, tc)
		if err != nil {
			return err
		}
		params = p
		g.logf("init: pinv baseline, rank %d of %d, sigma_max %.4g", sp.Rank, len(sp.Sigma), sp.SigmaMax)
	}
	mlp, opt := midcoder.NewMLP(model, o.cfg.Layer, act), midcoder.NewAdamW(params, o.cfg.WeightDecay)
	job.Host = g.backend.trainer(mlp, params, opt, o.cfg.BatchSize*o.cfg.ContextLength)
	st, err := job.Begin(o.resume)
	if err != nil {
		return err
	}
	backend, err := g.backend.fit(fitData{cache: c, text: text, model: model, tc: tc, useStored: useStored}, o.cfg, job.Host, st.Rows)
	if err != nil {
		return err
	}
	defer backend.Close()
	epochs := o.cfg.Epochs()
	total := int64(epochs * o.cfg.StepsPerEpoch)
	bar := progress.New(g.stderr, "fit", total, "steps", g.quiet)
	bar.Resumed(int64(st.Epoch * o.cfg.StepsPerEpoch))
	if o.resume {
		bar.Logf("resuming at epoch %d of %d from %s", st.Epoch, epochs, job.CheckpointPath())
	}
	if need := int64(epochs*o.cfg.StepsPerEpoch*o.cfg.BatchSize) - st.Rows; c != nil && need > int64(c.Manifest.NSequences) {
		what := "the run reads"
		if st.Rows > 0 {
			what = "the rest of the run reads"
		}
		bar.Logf("note: %s %d sequences, the cache holds %d: it starts again from the first sequence when it runs out", what, need, c.Manifest.NSequences)
	}
	acts := "encoded from x shard by shard"
	switch {
	case !g.backend.cpu():
		acts = "computed on " + g.backend.describe()
	case useStored:
		acts = "stored in the cache"
	}
	g.logf("fit: layer %d, %d epochs × %d steps × %d sequences, acts %s", o.cfg.Layer, epochs, o.cfg.StepsPerEpoch, o.cfg.BatchSize, acts)
	var runLoss, runNorm float64
	var runN int
	// --out is made only by Run, so that a fit that cannot start (no GPU,
	// no memory) leaves nothing behind.
	err = job.Run(ctx, backend, st, midcoder.Hooks{
		AfterStep: func(_, _ int, loss, norm, lr float64) {
			runLoss, runNorm, runN = runLoss+loss, runNorm+norm, runN+1
			bar.Add(1, fmt.Sprintf("loss: %.3e, loss_norm: %.3e, lr: %.3e", runLoss/float64(runN), runNorm/float64(runN), lr))
		},
		AfterEpoch: func(st *midcoder.State) error {
			runLoss, runNorm, runN = 0, 0, 0
			r := st.History[len(st.History)-1]
			bar.Add(0, fmt.Sprintf("loss: %.3e, loss_norm: %.3e, lr: %.3e", r.Loss, r.LossNorm, r.LR))
			return nil
		},
	})
	bar.Finish()
	if ended := (*midcoder.DataEndedError)(nil); errors.As(err, &ended) && o.data != "" {
		err = fmt.Errorf("--data %s: %w", o.data, err)
	}
	if err != nil {
		switch {
		case ctx.Err() != nil && st.Epoch > 0:
			fmt.Fprintf(g.stderr, "ctxdep: checkpoint after epoch %d is in %s: continue with --resume\n", st.Epoch, job.CheckpointPath())
		case st.Epoch > 0 && writeFailed(err) && exists(job.CheckpointPath()):
			// A full disk while writing a checkpoint or the result: the
			// last checkpoint written is whole, and the fit can go on
			// from it.
			fmt.Fprintf(g.stderr, "ctxdep: %s holds the fit's last checkpoint: once the cause below is fixed, continue with --resume\n", job.CheckpointPath())
		}
		return err
	}
	if n := len(job.Host.Opt.UntrainedRows(params.F, params.C)); n > 0 {
		why := "more --train-tokens would train more"
		if c != nil && int64(epochs*o.cfg.StepsPerEpoch*o.cfg.BatchSize) >= int64(c.Manifest.NSequences) {
			why = "they never fire on this cache"
		}
		g.notef("fit: %d of %d features never fired in the fit's batches (%s): their W_mid rows are untrained, and report marks them fit_trained 0", n, params.F, why)
	}
	return printHistory(g, st.History)
}

// checkFitSize checks the fit's numbers before any work: the settings'
// products (midcoder.Config.Check: no overflow, at most 2^53 tokens), a
// batch of at most the cache's sequences, rows from --data within the
// model's context, and the batch's buffers within the machine's memory.
func checkFitSize(g *globalOptions, o *fitOptions, c *actcache.Cache) error {
	if err := o.cfg.Check(); err != nil {
		return usagef("%v", err)
	}
	if c != nil && o.cfg.BatchSize > c.Manifest.NSequences {
		n := c.Manifest.NSequences
		return usagef("--batch-size %d is more than the %d sequences the cache %s holds: a batch is of distinct sequences, so use at most %d (or build a larger cache)", o.cfg.BatchSize, n, o.cache, n)
	}
	mc, err := g.modelConfig()
	if err != nil {
		return err
	}
	if c == nil {
		if err := o.dataOptions.checkContext(mc.NCtx); err != nil {
			return err
		}
	}
	return checkMemory(o.cfg.ContextLength, fitBuffers(o.cfg.BatchSize, mc.DModel, mc.DMLP, c == nil, g.backend.cpu()))
}

func printHistory(g *globalOptions, h []midcoder.Record) error {
	if g.json {
		if h == nil {
			h = []midcoder.Record{}
		}
		return json.NewEncoder(g.stdout).Encode(h)
	}
	t := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(t, "epoch\tloss\tloss_norm\tlr\t")
	for _, r := range h {
		fmt.Fprintf(t, "%d\t%.6g\t%.6g\t%.3e\t\n", r.Epoch, r.Loss, r.LossNorm, r.LR)
	}
	return t.Flush()
}

// fitData is where a fit's batches come from: a cache or a text stream.
type fitData struct {
	cache     *actcache.Cache
	text      *textRows
	model     *gpt2.Model
	tc        *transcoder.Transcoder
	useStored bool // the cache's stored activations are of tc
}

// writeFailed reports whether err is the filesystem's refusal to store
// more (a full disk or quota), which a rerun can get past.
func writeFailed(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
