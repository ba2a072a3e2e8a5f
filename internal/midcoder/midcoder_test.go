package midcoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Golden trajectories come from testdata/gen/gen_midcoder.py: the
// notebook's midcoder in PyTorch 1.13 (float32, AdamW, CosineAnnealingLR)
// on the committed layer-1 fixtures; regenerate with
// `/usr/bin/python3 testdata/gen/gen_midcoder.py`.
const (
	goldenMid    = "../../testdata/golden/midcoder.safetensors"
	goldenCache  = "../../testdata/golden/cache_hooks.safetensors"
	goldenWeight = "../../testdata/golden/gpt2_processed.safetensors"
	tcFile       = "../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"
)

type fixture struct {
	mlp   func(Activation) *MLP
	tc    *transcoder.Transcoder
	cache *actcache.Cache
}

// load builds a cache (shards of 4 and 2 sequences) from the golden x and
// y of layer 1, so that batches cross shards and wrap around, as in the
// PyTorch run.
func load(t *testing.T, withActs bool) fixture {
	t.Helper()
	g := testutil.Golden(t, goldenCache)
	w := testutil.Golden(t, goldenWeight)
	tc, err := transcoder.Load(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	man := actcache.Manifest{Layer: 1, DModel: 16, ContextLength: 16, NSequences: 6, DType: "float32",
		Hooks: actcache.HookNames(1), SequencesPerShard: 4, Data: actcache.Data{Kind: "test"}}
	if withActs {
		man.WithActs, man.DSAE = true, 64
	}
	cw, err := actcache.Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	x, y := g["x.1"], g["y.1"]
	enc := tc.NewEncoder()
	for i, rows := range [][2]int{{0, 4}, {4, 6}} {
		lo, hi := rows[0]*256, rows[1]*256
		var acts *transcoder.Acts
		if withActs {
			acts = &transcoder.Acts{}
			enc.Encode(acts, x[lo:hi], (hi-lo)/16)
		}
		if err := cw.WriteShard(i, make([]int32, (hi-lo)/16), x[lo:hi], y[lo:hi], nil, acts); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Finish(); err != nil {
		t.Fatal(err)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mlp := func(a Activation) *MLP {
		return newMLP(w["blocks.1.mlp.W_in"], w["blocks.1.mlp.b_in"], w["blocks.1.mlp.W_out"], w["blocks.1.mlp.b_out"], 16, 64, a)
	}
	return fixture{mlp, tc, c}
}

type goldenCase struct {
	Name          string  `json:"name"`
	Act           string  `json:"act"`
	BatchSize     int     `json:"batch_size"`
	StepsPerEpoch int     `json:"steps_per_epoch"`
	TrainTokens   int64   `json:"train_tokens"`
	LR            float64 `json:"lr"`
	WeightDecay   float64 `json:"weight_decay"`
	Init          string  `json:"init"`
}

func goldenCases(t *testing.T) []goldenCase {
	f, err := safetensors.Open(goldenMid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cs []goldenCase
	if err := json.Unmarshal([]byte(f.Metadata()["cases"]), &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func (gc goldenCase) config() Config {
	return Config{Layer: 1, ContextLength: 16, BatchSize: gc.BatchSize, StepsPerEpoch: gc.StepsPerEpoch,
		TrainTokens: gc.TrainTokens, LR: gc.LR, WeightDecay: gc.WeightDecay, Init: gc.Init, Act: gc.Act}
}

// fit runs a golden case with the sparse trainer, or the dense reference.
func fit(t *testing.T, fx fixture, gc goldenCase, g map[string][]float32, dense, stored bool) (*Trainer, *State, []float64) {
	t.Helper()
	act, _ := ParseActivation(gc.Act)
	p := NewParams(64, 16)
	if init, ok := g[gc.Name+".W_mid_init"]; ok {
		copy(p.WMid, init)
	}
	cfg := gc.config()
	tr := NewTrainer(fx.mlp(act), p, NewAdamW(p, cfg.WeightDecay), cfg.BatchSize*16)
	src, err := NewCacheSource(fx.cache, fx.tc, stored)
	if err != nil {
		t.Fatal(err)
	}
	var steps []float64
	st := &State{LR: cfg.LR}
	step := tr.Step
	if dense {
		step = tr.DenseStep
	}
	err = Fit(context.Background(), cfg, NewCPUBackend(&stepper{tr, step}, src), st, Hooks{AfterStep: func(_, _ int, loss, _, _ float64) { steps = append(steps, loss) }})
	if err != nil {
		t.Fatal(err)
	}
	return tr, st, steps
}

// The sparse trainer reproduces PyTorch's trajectory: parameters after the
// fit, every step's loss, and the per-epoch history (loss, loss_norm, lr).
// Tolerance: float32 throughout on both sides, with different summation
// orders (a GEMM over F in torch, a gather here): 2e-6 absolute + 1e-5
// relative on parameters of size ~1e-3…1e-1, 1e-5 relative on losses; the
// lr follows torch's recursive formula in float64 and must match exactly.
func TestFitMatchesPyTorch(t *testing.T) {
	g := testutil.Golden(t, goldenMid)
	for _, stored := range []bool{false, true} {
		fx := load(t, stored)
		for _, gc := range goldenCases(t) {
			t.Run(fmt.Sprintf("%s/stored=%v", gc.Name, stored), func(t *testing.T) {
				tr, st, steps := fit(t, fx, gc, g, false, stored)
				testutil.Close(t, "W_mid", tr.Params.WMid, g[gc.Name+".W_mid"], 2e-6, 1e-5)
				testutil.Close(t, "b_mid", tr.Params.BMid, g[gc.Name+".b_mid"], 2e-6, 1e-5)
				testutil.Close(t, "step_loss", dtype.Float32s(steps), g[gc.Name+".step_loss"], 0, 1e-5)
				h := g[gc.Name+".history"]
				if len(st.History)*3 != len(h) {
					t.Fatalf("%d epochs, want %d", len(st.History), len(h)/3)
				}
				for e, r := range st.History {
					testutil.Close(t, fmt.Sprint("epoch ", e, " loss, loss_norm"), dtype.Float32s([]float64{r.Loss, r.LossNorm}), h[e*3:e*3+2], 0, 1e-5)
					if float32(r.LR) != h[e*3+2] {
						t.Errorf("epoch %d lr = %.17g, want %.9g", e, r.LR, h[e*3+2])
					}
				}
			})
		}
	}
}

// The sparse path (gather, scatter, fused AdamW) equals the dense
// reference (PyTorch's formulation) step by step. The two sum each
// gradient entry in different orders (a GEMM over all rows, or AXPYs over
// the active ones; OpenBLAS may fuse multiply-adds), so an entry whose terms
// nearly cancel differs by float32 rounding of its largest terms: the
// tolerance is 1e-5 relative plus 1e-5 of the tensor's largest magnitude.
func TestSparseEqualsDense(t *testing.T) {
	g := testutil.Golden(t, goldenMid)
	fx := load(t, false)
	for _, gc := range goldenCases(t) {
		sp, _, ls := fit(t, fx, gc, g, false, false)
		de, _, ld := fit(t, fx, gc, g, true, false)
		for _, c := range []struct {
			name      string
			got, want []float32
		}{
			{"W_mid", sp.Params.WMid, de.Params.WMid}, {"b_mid", sp.Params.BMid, de.Params.BMid},
			{"m_W", sp.Opt.MW, de.Opt.MW}, {"v_W", sp.Opt.VW, de.Opt.VW},
		} {
			testutil.Close(t, gc.Name+" "+c.name, c.got, c.want, 1e-5*testutil.MaxAbs(c.want), 1e-5)
		}
		testutil.Close(t, gc.Name+" losses", dtype.Float32s(ls), dtype.Float32s(ld), 0, 1e-6)
	}
}

// The backward pass is the gradient of the loss: central finite
// differences of the loss, computed in float64 by a naive forward written
// here (h = 1e-6: truncation ~1e-12, no ReLU kink crossed in practice),
// against the float32 gradient the trainer applies, on W_mid entries of
// active features and on b_mid, for both activations.
func TestGradientFiniteDifference(t *testing.T) {
	fx := load(t, false)
	for _, act := range []Activation{ReLU, GeluNew} {
		p := NewParams(64, 16)
		p.KaimingUniform(3)
		mlp := fx.mlp(act)
		tr := NewTrainer(mlp, p, NewAdamW(p, 0), 32)
		src, _ := NewCacheSource(fx.cache, fx.tc, false)
		acts, y, err := src.Next(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float64, len(p.WMid))
		b := make([]float64, len(p.BMid))
		for i, v := range p.WMid {
			w[i] = float64(v)
		}
		for i, v := range p.BMid {
			b[i] = float64(v)
		}
		gW, gB := tr.Gradients(acts, y)
		check := func(what string, param *float64, grad float32) {
			t.Helper()
			const h = 1e-6
			old := *param
			*param = old + h
			up := loss64(mlp, acts, y, w, b)
			*param = old - h
			down := loss64(mlp, acts, y, w, b)
			*param = old
			fd := (up - down) / (2 * h)
			if math.Abs(fd-float64(grad)) > 1e-4*math.Abs(fd)+1e-6 {
				t.Errorf("%v %s: gradient %.7g, finite difference %.7g", act, what, grad, fd)
			}
		}
		for _, r := range []int{0, 5, 20} {
			idx, _ := acts.Row(r)
			for _, f := range idx[:min(3, len(idx))] {
				for _, j := range []int{0, 7, 15} {
					check(fmt.Sprintf("W_mid[%d,%d]", f, j), &w[int(f)*16+j], gW[int(f)*16+j])
				}
			}
		}
		for _, j := range []int{0, 3, 11} {
			check(fmt.Sprintf("b_mid[%d]", j), &b[j], gB[j])
		}
	}
}

// loss64 is the midcoder's loss straight from its definition in float64.
func loss64(mlp *MLP, acts *transcoder.Acts, y []float32, w, b []float64) float64 {
	c, n := mlp.C, mlp.N
	var se float64
	for r := 0; r < acts.Rows(); r++ {
		mid := append([]float64(nil), b...)
		idx, val := acts.Row(r)
		for i, f := range idx {
			for j := 0; j < c; j++ {
				mid[j] += float64(val[i]) * w[int(f)*c+j]
			}
		}
		h := make([]float64, n)
		for k := 0; k < n; k++ {
			s := float64(mlp.BIn[k])
			for j := 0; j < c; j++ {
				s += mid[j] * float64(mlp.WIn[j*n+k])
			}
			if mlp.Act == ReLU {
				h[k] = math.Max(s, 0)
			} else {
				h[k] = 0.5 * s * (1 + math.Tanh(0.7978845608028654*(s+0.044715*s*s*s)))
			}
		}
		for j := 0; j < c; j++ {
			o := float64(mlp.BOut[j])
			for k := 0; k < n; k++ {
				o += h[k] * float64(mlp.WOut[k*c+j])
			}
			d := o - float64(y[r*c+j])
			se += d * d
		}
	}
	return se / float64(acts.Rows()*c)
}

// stepper runs Fit with a chosen step function (the sparse Step or the
// dense reference).
type stepper struct {
	tr *Trainer
	fn func(*transcoder.Acts, []float32, float64) (float64, float64)
}

func (s *stepper) Step(a *transcoder.Acts, y []float32, lr float64) (float64, float64) {
	return s.fn(a, y, lr)
}

// A fit interrupted after an epoch and resumed from its checkpoint ends
// bit for bit where an uninterrupted fit does.
func TestResumeEqualsUninterrupted(t *testing.T) {
	g := testutil.Golden(t, goldenMid)
	fx := load(t, false)
	var gc goldenCase
	for _, c := range goldenCases(t) {
		if c.Name == "relu3" { // 3 epochs, wraps around the cache
			gc = c
		}
	}
	want, wantSt, _ := fit(t, fx, gc, g, false, false)

	cfg := gc.config()
	newTrainer := func() *Trainer {
		p := NewParams(64, 16)
		copy(p.WMid, g[gc.Name+".W_mid_init"])
		return NewTrainer(fx.mlp(ReLU), p, NewAdamW(p, cfg.WeightDecay), cfg.BatchSize*16)
	}
	ckpt := filepath.Join(t.TempDir(), "checkpoint.safetensors")
	prov := Provenance{DataKind: "test"}
	key := Key(cfg, prov)
	meta := Meta{Layer: 1, DModel: 16, DSAE: 64, Method: "fit", Config: cfg, Provenance: prov}
	interrupted := errors.New("interrupted")
	tr := newTrainer()
	src, _ := NewCacheSource(fx.cache, fx.tc, false)
	err := Fit(context.Background(), cfg, NewCPUBackend(tr, src), &State{LR: cfg.LR}, Hooks{AfterEpoch: func(st *State) error {
		if err := SaveCheckpoint(ckpt, tr, st, meta, key); err != nil {
			return err
		}
		if st.Epoch == 1 {
			return interrupted
		}
		return nil
	}})
	if !errors.Is(err, interrupted) {
		t.Fatalf("Fit error = %v", err)
	}

	tr = newTrainer()
	if _, err := LoadCheckpoint(ckpt, tr, "another key"); err == nil {
		t.Error("LoadCheckpoint accepted a checkpoint of other settings")
	}
	st, err := LoadCheckpoint(ckpt, tr, key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 1 || len(st.History) != 1 || tr.Opt.Step != cfg.StepsPerEpoch {
		t.Fatalf("checkpoint state %+v, step %d", st, tr.Opt.Step)
	}
	src, _ = NewCacheSource(fx.cache, fx.tc, false)
	if err := src.Skip(st.Rows); err != nil {
		t.Fatal(err)
	}
	if err := Fit(context.Background(), cfg, NewCPUBackend(tr, src), st, Hooks{}); err != nil {
		t.Fatal(err)
	}
	testutil.Close(t, "W_mid", tr.Params.WMid, want.Params.WMid, 0, 0)
	testutil.Close(t, "b_mid", tr.Params.BMid, want.Params.BMid, 0, 0)
	if fmt.Sprint(st.History) != fmt.Sprint(wantSt.History) {
		t.Errorf("history %v, want %v", st.History, wantSt.History)
	}
}

// A non-finite loss stops the fit with an error naming epoch and step.
func TestNonFiniteLoss(t *testing.T) {
	fx := load(t, false)
	p := NewParams(64, 16)
	for i := range p.WMid {
		p.WMid[i] = float32(math.NaN())
	}
	cfg := Config{ContextLength: 16, BatchSize: 2, StepsPerEpoch: 2, TrainTokens: 10, LR: 1e-3}
	tr := NewTrainer(fx.mlp(ReLU), p, NewAdamW(p, 0), 32)
	src, _ := NewCacheSource(fx.cache, fx.tc, false)
	err := Fit(context.Background(), cfg, NewCPUBackend(tr, src), &State{LR: cfg.LR}, Hooks{})
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Epoch != 0 || nf.Step != 0 {
		t.Fatalf("Fit error = %v, want a NonFiniteError at epoch 0, step 0", err)
	}
}

// Save and Load round-trip a midcoder file with its metadata.
func TestSaveLoad(t *testing.T) {
	p := NewParams(5, 3)
	p.KaimingUniform(1)
	p.BMid[2] = 0.5
	path := filepath.Join(t.TempDir(), "m.safetensors")
	meta := Meta{Layer: 8, DModel: 3, DSAE: 5, Method: "fit", Config: Config{BatchSize: 64, LR: 1e-3, Act: "relu"},
		History: []Record{{Epoch: 0, Loss: 1, LossNorm: 0.5, LR: 5e-4}}}
	if err := Save(path, p, meta); err != nil {
		t.Fatal(err)
	}
	q, got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Close(t, "W_mid", q.WMid, p.WMid, 0, 0)
	testutil.Close(t, "b_mid", q.BMid, p.BMid, 0, 0)
	if got.Layer != 8 || got.Config.BatchSize != 64 || len(got.History) != 1 || got.Format != FormatMidcoder {
		t.Errorf("meta %+v", got)
	}
	// The untrained list round-trips, and one that names no feature of
	// the file (out of range, or not ascending) is refused.
	meta.Untrained = []int{1, 4}
	if err := Save(path, p, meta); err != nil {
		t.Fatal(err)
	}
	if _, got, err := Load(path); err != nil || !slices.Equal(got.Untrained, []int{1, 4}) {
		t.Errorf("untrained %v, %v; want [1 4]", got.Untrained, err)
	}
	for _, bad := range [][]int{{5}, {-1}, {3, 3}, {4, 1}} {
		meta.Untrained = bad
		if err := Save(path, p, meta); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), `"untrained"`) {
			t.Errorf("untrained %v: Load error %v", bad, err)
		}
	}
	// fit's --out directory in place of its file: the error names the file.
	dir := t.TempDir()
	if err := Save(filepath.Join(dir, ResultFile), p, meta); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "give "+filepath.Join(dir, ResultFile)) {
		t.Errorf("Load(fit's directory) error = %v", err)
	}
	// Kaiming bound sqrt(6/C).
	b := math.Sqrt(6.0 / 3)
	for _, v := range p.WMid {
		if math.Abs(float64(v)) > b {
			t.Fatalf("kaiming value %g beyond ±%g", v, b)
		}
	}
}

func TestEpochsAndCosine(t *testing.T) {
	// The notebook: 100,000 tokens, T = 128, B = 64, 10 steps: 2 epochs.
	if e := (Config{ContextLength: 128, BatchSize: 64, StepsPerEpoch: 10, TrainTokens: 100000}).Epochs(); e != 2 {
		t.Errorf("Epochs = %d, want 2", e)
	}
	// Two epochs at lr 1e-3: 1e-3 during epoch 0, 5e-4 after it, then 0.
	lr1 := CosineNext(1e-3, 1e-3, 1, 2)
	lr2 := CosineNext(1e-3, lr1, 2, 2)
	if math.Abs(lr1-5e-4) > 1e-18 || lr2 != 0 {
		t.Errorf("cosine lrs %g, %g; want 5e-4, 0", lr1, lr2)
	}
}

// Epochs and Check at the edges of int64: the products T·B·steps_per_epoch
// and epochs × tokens per epoch never overflow, Epochs never panics (it
// divided by a product that wrapped to 0 before), and Check refuses a fit
// of more than MaxTokens tokens instead of running 0 or 10^15 epochs.
func TestConfigEpochsAtTheEdges(t *testing.T) {
	const maxI64 = math.MaxInt64
	// cfg is a valid config but for T, B, steps per epoch and train tokens.
	cfg := func(ctx, batch, steps int, train int64) Config {
		return Config{ContextLength: ctx, BatchSize: batch, StepsPerEpoch: steps, TrainTokens: train, LR: 1e-3, WeightDecay: 1e-3}
	}
	for _, c := range []struct {
		name   string
		cfg    Config
		epochs int
		err    string // "" means Check accepts it
	}{
		{"defaults", cfg(16, 32, 10, 1000000), 196, ""},
		// ctxdep fit --steps-per-epoch 576460752303423488: 16·32·2^59 = 2^68 wrapped to 0.
		{"epoch product wraps to 0", cfg(16, 32, 1<<59, 1000000), 1, "steps per epoch 576460752303423488"},
		// --steps-per-epoch 9223372036854775807: the product wrapped to a negative count.
		{"steps per epoch MaxInt64", cfg(16, 32, maxI64, 1000000), 1, "--steps-per-epoch"},
		{"batch size MaxInt64", cfg(16, maxI64, 10, 1000000), 1, "--batch-size"},
		{"context length MaxInt64", cfg(maxI64, 32, 10, 1000000), 1, "per epoch"},
		{"an epoch of exactly 2^53 tokens", cfg(1<<13, 1<<20, 1<<20, 0), 1, ""},
		{"an epoch of 2^53 + 2^33 tokens", cfg(1<<13, 1<<20, 1<<20+1, 0), 1, "per epoch"},
		// Beyond MaxTokens but within int64, Epochs stays exact.
		{"an epoch of 2^60 tokens", cfg(1<<20, 1<<20, 1<<20, 1<<62), 5, "2^53"},
		{"train tokens MaxInt64", cfg(16, 32, 10, maxI64), maxI64/(16*32*10) + 1, "train tokens 9223372036854775807"},
		{"train tokens MaxInt64, one token per epoch", cfg(1, 1, 1, maxI64), math.MaxInt, "train tokens"},
		{"2^53 tokens in all", cfg(1, 1, 1, 1<<53-1), 1 << 53, ""},
		{"2^53 + 1 tokens in all", cfg(1, 1, 1, 1<<53), 1<<53 + 1, "--train-tokens"},
		{"zero batch size", cfg(16, 0, 10, 1000), 1, "must be positive"},
		{"negative steps per epoch", cfg(16, 32, -1, 1000), 1, "must be positive"},
		{"negative train tokens", cfg(16, 32, 10, -1), 1, "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if e := c.cfg.Epochs(); e != c.epochs {
				t.Errorf("Epochs = %d, want %d", e, c.epochs)
			}
			err := c.cfg.Check()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("Check: %v, want nil", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("Check: %v, want an error mentioning %q", err, c.err)
			}
		})
	}
}
