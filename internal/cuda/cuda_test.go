//go:build cuda || cudasim

package cuda

// These tests compare every device computation with the CPU
// implementation it replaces (itself checked against PyTorch's goldens in
// its own package), on the committed tiny fixtures and on
// GPT-2-small-shaped random weights. scripts/gpu-check.sh runs them on a
// GPU machine, with the benchmarks below; make test-sim runs them on the
// simulated device (build tag cudasim), where the benchmarks mean nothing.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Golden x and y for the token file come from testdata/gen/gen_fixtures.py
// (PyTorch, float64 TransformerLens path; see testdata/gen/README.md).
const (
	modelDir    = "../../testdata/tiny-gpt2"
	tokensFile  = "../../testdata/tokens/tiny-int64.npy"
	goldenCache = "../../testdata/golden/cache_hooks.safetensors"
	tcFile      = "../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"
)

var dev *Device

func TestMain(m *testing.M) {
	blasimpl.Use(0)
	var err error
	if dev, err = Open(Options{TF32: os.Getenv("CTXDEP_TF32") == "1"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "device:", dev.Name())
	code := m.Run()
	dev.Close()
	os.Exit(code)
}

// tiny loads the committed fixtures: the tiny model, its layer-1
// transcoder and the token rows (b rows of t).
func tiny(t *testing.T) (m *gpt2.Model, tc *transcoder.Transcoder, tok []int32, b, tt int) {
	t.Helper()
	m, err := gpt2.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	if tc, err = transcoder.Load(tcFile); err != nil {
		t.Fatal(err)
	}
	tok, shape, err := npy.ReadInt32(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	return m, tc, tok, shape[0], shape[1]
}

// maxRel returns max |got − want| / max |want|, the error measure of the
// float32 comparisons below (sums in another order differ in the last bits,
// relative to the values' scale, not to each small element).
func maxRel(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		s = math.Max(s, math.Abs(float64(want[i])))
	}
	return d / math.Max(s, 1e-30)
}

func cpuRun(m *gpt2.Model, tokens []int32, b, t, layer int) (x, y []float32) {
	ws := m.NewWorkspace(b * t)
	xv, yv, err := m.RunToBlock(ws, tokens, b, t, layer, nil)
	if err != nil {
		panic(err)
	}
	return append([]float32(nil), xv...), append([]float32(nil), yv...)
}

func gpuRun(t *testing.T, m *gpt2.Model, tc *transcoder.Transcoder, tokens []int32, b, tt, layer int) (x, y []float32, acts *transcoder.Acts) {
	t.Helper()
	var tcs []*transcoder.Transcoder
	if tc != nil {
		tcs = []*transcoder.Transcoder{tc}
	}
	f, err := dev.NewForward(m, []int{layer}, tcs, b, tt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Free()
	n := b * tt * m.DModel
	x, y = make([]float32, n), make([]float32, n)
	acts = &transcoder.Acts{}
	if tc == nil {
		acts = nil
	}
	if err := f.Run(tokens, b, tt, []cachebuild.Capture{{X: x, Y: y, Acts: acts}}); err != nil {
		t.Fatal(err)
	}
	return x, y, acts
}

// One device pass capturing layers 0 and 2 gives each layer the bits of
// a pass that stops at that layer: x, y and the acts.
func TestForwardLayerSet(t *testing.T) {
	m, tc, _, _, _ := tiny(t)
	b, tt := 3, 16
	tokens := gpt2.RandomTokens(b*tt, m.DVocab, 7)
	f, err := dev.NewForward(m, []int{0, 2}, []*transcoder.Transcoder{tc, tc}, b, tt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Free()
	n := b * tt * m.DModel
	out := make([]cachebuild.Capture, 2)
	for i := range out {
		out[i] = cachebuild.Capture{X: make([]float32, n), Y: make([]float32, n), Acts: &transcoder.Acts{}}
	}
	if err := f.Run(tokens, b, tt, out); err != nil {
		t.Fatal(err)
	}
	for i, l := range []int{0, 2} {
		x, y, acts := gpuRun(t, m, tc, tokens, b, tt, l)
		if fmt.Sprint(x) != fmt.Sprint(out[i].X) || fmt.Sprint(y) != fmt.Sprint(out[i].Y) || fmt.Sprint(*acts) != fmt.Sprint(*out[i].Acts) {
			t.Errorf("layer %d of the set differs from a pass to layer %d alone", l, l)
		}
	}
}

// Into page-locked host memory (HostFloats) x and y come back on the copy
// stream, overlapping the encoder and the later blocks: the same bits as
// synchronous copies into Go's memory, for a layer before the deepest
// (copied through its staging buffers), the deepest (copied in place),
// with the scale computed from y on the host, in two passes of different
// tokens into the same buffers. (The simulated device runs the copy
// stream's copies as late as it may, when Run synchronises it: a copy
// from a buffer overwritten before then, or y read before it, differs.)
func TestForwardPinned(t *testing.T) {
	m, tc, _, _, _ := tiny(t)
	b, tt := 3, 16
	layers := []int{0, 2}
	f, err := dev.NewForward(m, layers, []*transcoder.Transcoder{tc, tc}, b, tt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Free()
	n := b * tt * m.DModel
	var pinned [][]float32
	defer func() {
		for _, s := range pinned {
			f.FreeHostFloats(s)
		}
	}()
	// Without the scale, and with it (a layer before the deepest waits
	// for the copies to compute it).
	for _, scale := range []bool{false, true} {
		captures := func(floats func(int) []float32) []cachebuild.Capture {
			out := make([]cachebuild.Capture, len(layers))
			for i := range out {
				out[i] = cachebuild.Capture{X: floats(n), Y: floats(n), Acts: &transcoder.Acts{}}
				if scale {
					out[i].Scale = make([]float32, b*tt)
				}
			}
			return out
		}
		fast := captures(func(k int) []float32 {
			s, err := f.HostFloats(k)
			if err != nil {
				t.Fatal(err)
			}
			pinned = append(pinned, s)
			return s
		})
		for seed := range uint64(2) {
			tokens := gpt2.RandomTokens(b*tt, m.DVocab, 11+seed)
			want := captures(func(k int) []float32 { return make([]float32, k) })
			if err := f.Run(tokens, b, tt, want); err != nil {
				t.Fatal(err)
			}
			if err := f.Run(tokens, b, tt, fast); err != nil {
				t.Fatal(err)
			}
			for i, l := range layers {
				g, w := fast[i], want[i]
				if !slices.Equal(g.X, w.X) || !slices.Equal(g.Y, w.Y) || !slices.Equal(g.Scale, w.Scale) || fmt.Sprint(*g.Acts) != fmt.Sprint(*w.Acts) {
					t.Errorf("scale %v, pass %d, layer %d: page-locked copies differ from synchronous ones", scale, seed, l)
				}
			}
		}
	}
}

// syncPass is a pass without HostMemory: cache build gives it Go memory.
type syncPass struct{ cachebuild.Pass }

// cache build with the device's pass, whose copies go through page-locked
// memory and the copy stream, writes the shards of one whose copies are
// synchronous, byte for byte (two layers with acts, 6 rows in batches of
// 4: the last one short; without and with the scale).
func TestBuildPinned(t *testing.T) {
	m, tc, tok, _, tt := tiny(t)
	layers := []int{0, 1}
	for _, scale := range []bool{false, true} {
		dirs := []string{t.TempDir(), t.TempDir()}
		for k, dir := range dirs {
			f, err := dev.NewForward(m, layers, []*transcoder.Transcoder{tc, tc}, 4, tt)
			if err != nil {
				t.Fatal(err)
			}
			var pass cachebuild.Pass = f
			if k == 1 {
				pass = syncPass{f}
			}
			o := cachebuild.Options{Model: m, Pass: pass, Rows: cachebuild.Int32Rows{Data: tok, T: tt}, DataKind: "test",
				BatchSize: 4, PerShard: 4, DType: "float32", WithScale: scale}
			for _, l := range layers {
				o.Layers = append(o.Layers, cachebuild.Layer{Layer: l, Out: filepath.Join(dir, fmt.Sprint(l)), Transcoder: tc})
			}
			_, err = cachebuild.Build(context.Background(), o)
			f.Free()
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range layers {
			for _, name := range []string{"shard-00000.safetensors", "shard-00001.safetensors"} {
				a, errA := os.ReadFile(filepath.Join(dirs[0], fmt.Sprint(l), name))
				b, errB := os.ReadFile(filepath.Join(dirs[1], fmt.Sprint(l), name))
				if errA != nil || errB != nil || !bytes.Equal(a, b) {
					t.Errorf("scale %v, layer %d %s: page-locked build differs from synchronous (%v, %v)", scale, l, name, errA, errB)
				}
			}
		}
	}
}

// On the tiny fixture the device's x and y are TransformerLens's (the
// PyTorch goldens) to the CPU test's tolerance, at every layer.
func TestForwardTinyMatchesTransformerLens(t *testing.T) {
	m, _, tok, b, tt := tiny(t)
	g := testutil.Golden(t, goldenCache)
	for layer := 0; layer < m.NLayer; layer++ {
		x, y, _ := gpuRun(t, m, nil, tok, b, tt, layer)
		xn, yn := fmt.Sprint("x.", layer), fmt.Sprint("y.", layer)
		testutil.Close(t, xn, x, g[xn], 1e-5, 1e-5)
		testutil.Close(t, yn, y, g[yn], 1e-5, 1e-5)
	}
}

// The device's sparse activations equal the CPU encoder's on the tiny
// fixture: same features, values to float32 tolerance.
func TestEncodeTiny(t *testing.T) {
	m, tc, tok, b, tt := tiny(t)
	x, _, acts := gpuRun(t, m, tc, tok, b, tt, 1)
	var want transcoder.Acts
	tc.NewEncoder().Encode(&want, x, b*tt)
	compareActs(t, acts, &want, 0, 1e-4)
}

// compareActs checks that got and want have the same active features per
// row, except at most maxFlips entries whose value is within valTol·max
// of zero (where rounding decides), and values within valTol·max.
func compareActs(t *testing.T, got, want *transcoder.Acts, maxFlips int, valTol float64) {
	t.Helper()
	if got.Rows() != want.Rows() {
		t.Fatalf("acts have %d rows, want %d", got.Rows(), want.Rows())
	}
	flips := 0
	var maxDiff, maxVal float64
	for r := 0; r < want.Rows(); r++ {
		gi, gv := got.Row(r)
		wi, wv := want.Row(r)
		gm := map[int32]float32{}
		for k, f := range gi {
			gm[f] = gv[k]
			if k > 0 && gi[k-1] >= f {
				t.Fatalf("row %d: features not ascending", r)
			}
		}
		for k, f := range wi {
			maxVal = math.Max(maxVal, float64(wv[k]))
			v, ok := gm[f]
			if !ok {
				if float64(wv[k]) > valTol*math.Max(maxVal, 1) {
					t.Fatalf("row %d: feature %d (%g) missing on the device", r, f, wv[k])
				}
				flips++
				continue
			}
			maxDiff = math.Max(maxDiff, math.Abs(float64(v-wv[k])))
			delete(gm, f)
		}
		for f, v := range gm {
			if float64(v) > valTol*math.Max(maxVal, 1) {
				t.Fatalf("row %d: feature %d (%g) active only on the device", r, f, v)
			}
			flips++
		}
	}
	if flips > maxFlips {
		t.Errorf("%d features flipped at the threshold, allowed %d", flips, maxFlips)
	}
	if maxDiff > valTol*math.Max(maxVal, 1) {
		t.Errorf("activations differ by up to %g (largest %g)", maxDiff, maxVal)
	}
	t.Logf("acts: %d rows, nnz %d (device %d), %d threshold flips, max |diff| %.3g of max %.3g", want.Rows(), len(want.Indices), len(got.Indices), flips, maxDiff, maxVal)
}

// smallShaped returns GPT-2-small-shaped random weights, a random
// transcoder of width 24,576 firing ≈64 features per token, and tokens.
func smallShaped(b, tt int) (*gpt2.Model, *transcoder.Transcoder, []int32) {
	smallOnce.Do(func() {
		cfg := gpt2.Small()
		smallModel = gpt2.Random(cfg, 1)
		smallTC = transcoder.Random(cfg.DModel, smallSAE, 64, 2)
	})
	return smallModel, smallTC, gpt2.RandomTokens(b*tt, smallModel.DVocab, 3)
}

// smallSAE is the transcoder width at GPT-2 small's shapes: the real
// 24,576 on a GPU; 4,096 on the simulated device, whose emulated kernels
// would take minutes at full width in make test (every kernel still sees
// widths well beyond its block of threads).
var smallSAE = map[bool]int{false: 24576, true: 4096}[Simulated]

var (
	smallOnce  sync.Once
	smallModel *gpt2.Model
	smallTC    *transcoder.Transcoder
)

// At GPT-2 small's shapes (layer 8, rows of 128) the device matches the
// CPU on x, y and the acts.
func TestForwardSmallShape(t *testing.T) {
	b, tt, layer := 4, 128, 8
	if Simulated {
		b = 2
	}
	m, tc, tok := smallShaped(b, tt)
	x, y, acts := gpuRun(t, m, tc, tok, b, tt, layer)
	wx, wy := cpuRun(m, tok, b, tt, layer)
	tol := 2e-5
	if dev.opts.TF32 {
		tol = 5e-3
	}
	if e := maxRel(x, wx); e > tol {
		t.Errorf("x: max error %.3g of the scale, want ≤ %g", e, tol)
	} else {
		t.Logf("x: max error %.3g of the scale", e)
	}
	if e := maxRel(y, wy); e > tol {
		t.Errorf("y: max error %.3g of the scale, want ≤ %g", e, tol)
	} else {
		t.Logf("y: max error %.3g of the scale", e)
	}
	var want transcoder.Acts
	tc.NewEncoder().Encode(&want, x, b*tt)
	// With TF32 the GEMMs round their inputs to 10-bit mantissas: x, y
	// and the activations move by ~1e-3 of their scale, and more features
	// sit on the threshold.
	if dev.opts.TF32 {
		compareActs(t, acts, &want, len(want.Indices)/50, 2e-2)
	} else {
		compareActs(t, acts, &want, len(want.Indices)/1000, 1e-4)
	}
}

// A short fit on the device follows the CPU trainer's trajectory: the
// per-step losses and the final parameters agree to float32 tolerance
// (the device sums W_mid's gradient with atomics, in another order).
func TestFitTrajectory(t *testing.T) {
	if dev.opts.TF32 {
		t.Skip("with TF32 the trajectory drifts by ~1e-4 per step; this test holds the exact float32 GEMMs to the CPU")
	}
	for _, act := range []midcoder.Activation{midcoder.ReLU, midcoder.GeluNew} {
		t.Run(act.String(), func(t *testing.T) { fitTrajectory(t, dev, act, 2, 6) })
	}
}

// With Options.Deterministic the gradients are summed in a fixed order:
// two fits repeat bit for bit (W_mid, b_mid, W_mid's moments and the
// losses), and follow the CPU's trajectory as the default scatter does.
// Batches of 3 rows of 128 make two chunks of the sorted scatter. On the
// simulated device, whose atomics run in a fixed order too, the repeat
// shows nothing: there TestKernelSortedScatter checks the sorted sums.
func TestFitDeterministic(t *testing.T) {
	if dev.opts.TF32 {
		t.Skip("TestFitTrajectory's reason")
	}
	det, err := Open(Options{Ordinal: dev.opts.Ordinal, Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	a, la := fitTrajectory(t, det, midcoder.ReLU, 3, 2)
	b, lb := fitTrajectory(t, det, midcoder.ReLU, 3, 2)
	if !slices.Equal(la, lb) {
		t.Errorf("losses %v, then %v", la, lb)
	}
	for _, c := range []struct {
		name string
		a, b []float32
	}{{"W_mid", a.Params.WMid, b.Params.WMid}, {"b_mid", a.Params.BMid, b.Params.BMid}, {"m of W_mid", a.Opt.MW, b.Opt.MW}, {"v of W_mid", a.Opt.VW, b.Opt.VW}} {
		if !testutil.SameBits(c.a, c.b) {
			t.Errorf("%s differs between two deterministic fits", c.name)
		}
	}
}

// fitTrajectory runs steps of b rows of 128 tokens of a fit on d and on
// the CPU and compares them; it returns the device fit's host trainer
// (synchronised) and its losses.
func fitTrajectory(t *testing.T, d *Device, act midcoder.Activation, b, steps int) (*midcoder.Trainer, []float64) {
	tt, layer := 128, 8
	if Simulated {
		layer = 2 // the emulated attention kernels dominate the time: fewer blocks
	}
	m, tc, _ := smallShaped(b, tt)
	mlp := midcoder.NewMLP(m, layer, act)
	newParams := func() *midcoder.Params {
		p := midcoder.NewParams(tc.DSAE, m.DModel)
		p.KaimingUniform(7)
		return p
	}
	cp, gp := newParams(), newParams()
	cpu := midcoder.NewTrainer(mlp, cp, midcoder.NewAdamW(cp, 1e-3), b*tt)
	host := &midcoder.Trainer{Model: &midcoder.Model{MLP: mlp, Params: gp}, Opt: midcoder.NewAdamW(gp, 1e-3)}
	// The fit reads rows ahead of the steps it takes: room for a few more.
	tok := gpt2.RandomTokens((steps+4)*b*tt, m.DVocab, 11)
	i := 0
	next := func(dst []int32) error {
		if i+tt > len(tok) {
			return io.EOF
		}
		copy(dst, tok[i:i+tt])
		i += tt
		return nil
	}
	fit, err := d.NewTokenFit(m, layer, tc, host, next, tt, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fit.Close()
	var losses []float64
	enc := tc.NewEncoder()
	var acts transcoder.Acts
	lr := 1e-3
	for s := 0; s < steps; s++ {
		x, y := cpuRun(m, tok[s*b*tt:(s+1)*b*tt], b, tt, layer)
		enc.Encode(&acts, x, b*tt)
		wl, wn := cpu.Step(&acts, y, lr)
		gl, gn, err := fit.Step(context.Background(), b, lr)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, gl, gn)
		t.Logf("step %d: loss cpu %.7g gpu %.7g; loss_norm cpu %.7g gpu %.7g", s, wl, gl, wn, gn)
		if math.Abs(gl-wl) > 1e-4*math.Abs(wl) || math.Abs(gn-wn) > 1e-4*math.Abs(wn) {
			t.Errorf("step %d: loss %.7g, loss_norm %.7g on the device; %.7g, %.7g on the CPU", s, gl, gn, wl, wn)
		}
		lr *= 0.9
	}
	if err := fit.Sync(); err != nil {
		t.Fatal(err)
	}
	if host.Opt.Step != cpu.Opt.Step {
		t.Errorf("device took %d AdamW steps, CPU %d", host.Opt.Step, cpu.Opt.Step)
	}
	// The features the fit never trained (fit's "untrained" list) are the
	// same: a row's second moment is zero exactly when it got no gradient.
	if gu, cu := host.Opt.UntrainedRows(gp.F, gp.C), cpu.Opt.UntrainedRows(cp.F, cp.C); !slices.Equal(gu, cu) {
		t.Errorf("untrained rows: %d on the device, %d on the CPU (%v, %v)", len(gu), len(cu), gu, cu)
	} else {
		t.Logf("%d of %d rows untrained on both", len(gu), gp.F)
	}
	// AdamW normalises each update by sqrt(v): in its first steps a weight
	// moves by about lr·sign(g) whatever |g| is. A ReLU unit whose
	// pre-activation is within rounding of zero is active on one side only
	// (the GEMMs sum in another order), which changes the gradients of the
	// features active in that row, and a small gradient component that
	// cancels can change sign. So the parameters are compared on the scale
	// of the total move: none by more than twice it, and at most 1% of
	// them by more than 1% of it. (On the H100: ReLU 0.08% of W_mid, max
	// 0.5 of the move; gelu_new, which has no such edge, none.)
	move := lrSum(1e-3, steps)
	for _, c := range []struct {
		name      string
		got, want []float32
	}{{"W_mid", gp.WMid, cp.WMid}, {"b_mid", gp.BMid, cp.BMid}} {
		worst, far := diffs(c.got, c.want, 1e-2*move)
		t.Logf("%s: max |diff| %.3g, %d of %d differ by more than 1%% of the total move %.3g", c.name, worst, far, len(c.want), move)
		if worst > 2*move || far > len(c.want)/100 {
			t.Errorf("%s: device and CPU parameters disagree (max |diff| %.3g, %d beyond %.3g)", c.name, worst, far, 1e-2*move)
		}
	}
	return host, losses
}

// diffs returns max |a − b| and how many elements differ by more than tol.
func diffs(a, b []float32, tol float64) (worst float64, far int) {
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		worst = math.Max(worst, d)
		if d > tol {
			far++
		}
	}
	return worst, far
}

func lrSum(lr float64, steps int) float64 {
	s := 0.0
	for i := 0; i < steps; i++ {
		s += lr
		lr *= 0.9
	}
	return s
}

// BenchmarkForwardEncode is cache build's work per token on the device:
// GPT-2 small to block 8 and the transcoder's encoder for 64 rows of 128
// tokens, x, y and the acts copied back to the host; x and y into
// page-locked memory, on the copy stream while the encoder runs, as cache
// build does.
func BenchmarkForwardEncode(b *testing.B) { benchForwardEncode(b, true) }

// BenchmarkForwardEncodePageable is BenchmarkForwardEncode with x and y
// copied synchronously into Go's memory (cache build before the copy
// stream), for the copy stream's gain in the same run.
func BenchmarkForwardEncodePageable(b *testing.B) { benchForwardEncode(b, false) }

func benchForwardEncode(b *testing.B, pinned bool) {
	rows, tt := 64, 128
	m, tc, tok := smallShaped(rows, tt)
	f, err := dev.NewForward(m, []int{8}, []*transcoder.Transcoder{tc}, rows, tt)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Free()
	n := rows * tt * m.DModel
	x, y := make([]float32, n), make([]float32, n)
	if pinned {
		if x, err = f.HostFloats(n); err != nil {
			b.Fatal(err)
		}
		defer f.FreeHostFloats(x)
		if y, err = f.HostFloats(n); err != nil {
			b.Fatal(err)
		}
		defer f.FreeHostFloats(y)
	}
	var acts transcoder.Acts
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Run(tok, rows, tt, []cachebuild.Capture{{X: x, Y: y, Acts: &acts}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows*tt)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkFitStep is one training step of the notebook's fit from token
// ids (B = 64 rows of 128): forward to block 8, encode, midcoder step.
func BenchmarkFitStep(b *testing.B) { benchFitStep(b, dev) }

// BenchmarkFitStepDeterministic is BenchmarkFitStep with
// Options.Deterministic: the cost of the sorted scatter.
func BenchmarkFitStepDeterministic(b *testing.B) {
	det, err := Open(Options{Ordinal: dev.opts.Ordinal, TF32: dev.opts.TF32, Deterministic: true})
	if err != nil {
		b.Fatal(err)
	}
	defer det.Close()
	benchFitStep(b, det)
}

func benchFitStep(b *testing.B, d *Device) {
	rows, tt := 64, 128
	m, tc, _ := smallShaped(rows, tt)
	tok := gpt2.RandomTokens(8*rows*tt, m.DVocab, 5)
	fit, _ := notebookFit(b, d, m, tc, tok, rows, tt)
	defer fit.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := fit.Step(context.Background(), rows, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows*tt)/b.Elapsed().Seconds(), "tokens/s")
}

func notebookFit(b testing.TB, d *Device, m *gpt2.Model, tc *transcoder.Transcoder, tok []int32, rows, tt int) (*Fit, *midcoder.Trainer) {
	p := midcoder.NewParams(tc.DSAE, m.DModel)
	p.KaimingUniform(42)
	host := &midcoder.Trainer{Model: &midcoder.Model{MLP: midcoder.NewMLP(m, 8, midcoder.ReLU), Params: p}, Opt: midcoder.NewAdamW(p, 1e-3)}
	i := 0
	next := func(dst []int32) error { // cycles through tok
		copy(dst, tok[i:i+tt])
		i = (i + tt) % len(tok)
		return nil
	}
	fit, err := d.NewTokenFit(m, 8, tc, host, next, tt, rows, 0)
	if err != nil {
		b.Fatal(err)
	}
	return fit, host
}

// BenchmarkNotebookFit is the notebook's whole fit from token ids: 2
// epochs × 10 steps × 64 rows × 128 tokens = 163,840 tokens through
// midcoder.Fit (cosine schedule included), set-up excluded, the
// final W_mid and b_mid copied back to the host included (as PyTorch's
// timing includes W_mid.cpu()).
func BenchmarkNotebookFit(b *testing.B) {
	rows, tt := 64, 128
	m, tc, _ := smallShaped(rows, tt)
	tok := gpt2.RandomTokens(20*rows*tt, m.DVocab, 6)
	cfg := midcoder.Config{Layer: 8, ContextLength: tt, BatchSize: rows, StepsPerEpoch: 10, TrainTokens: 100000, LR: 1e-3, WeightDecay: 1e-3}
	var secs []float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fit, _ := notebookFit(b, dev, m, tc, tok, rows, tt)
		b.StartTimer()
		start := time.Now()
		if err := midcoder.Fit(context.Background(), cfg, fit, &midcoder.State{LR: cfg.LR}, midcoder.Hooks{}); err != nil {
			b.Fatal(err)
		}
		if err := fit.SyncParams(); err != nil {
			b.Fatal(err)
		}
		secs = append(secs, time.Since(start).Seconds())
		b.StopTimer()
		fit.Close()
		b.StartTimer()
	}
	sort.Float64s(secs)
	b.ReportMetric(secs[len(secs)/2], "s/fit")
	b.ReportMetric(float64(cfg.Epochs()*cfg.StepsPerEpoch*rows*tt)/secs[len(secs)/2], "tokens/s")
}

// BenchmarkPhases times the parts of the fit step on the device, each
// followed by a synchronisation: GPT-2 to block 8, the encoder with
// compaction, and the midcoder step (B = 64 rows of 128).
func BenchmarkPhases(b *testing.B) {
	rows, tt := 64, 128
	m, tc, tok := smallShaped(rows, tt)
	fit, _ := notebookFit(b, dev, m, tc, tok, rows, tt)
	defer fit.Close()
	if _, _, err := fit.Step(context.Background(), rows, 1e-3); err != nil { // warm-up, and acts for the step phase
		b.Fatal(err)
	}
	phases := []struct {
		name string
		run  func() error
	}{
		{"forward", func() error { return fit.m.run(tok, rows, tt) }},
		{"encode", func() error { return fit.enc.encode(fit.acts, fit.m.X(), rows*tt) }},
		{"midcoder-step", func() error { _, _, err := fit.tr.step(fit.acts, fit.m.Y(), 1e-3); return err }},
	}
	for _, ph := range phases {
		b.Run(ph.name, func(b *testing.B) {
			defer dev.enter()()
			for i := 0; i < b.N; i++ {
				if err := ph.run(); err != nil {
					b.Fatal(err)
				}
				if err := dev.sync(ph.name); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*rows*tt)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// The device's evaluation pass gives the CPU's per-batch sums: each
// variant's cross-entropy to 1e-5 relative (the bar), the
// reconstructions' squared errors and Σ y² to 1e-4, on the tiny fixture
// (layer 1, two midcoders: ReLU and gelu_new) and at GPT-2 small's shapes.
func TestEvaluateMatchesCPU(t *testing.T) {
	t.Run("tiny", func(t *testing.T) {
		m, tc, tok, b, tt := tiny(t)
		compareEval(t, m, tc, 1, tok, b, tt)
	})
	t.Run("gpt2-small-shapes", func(t *testing.T) {
		b, tt := 4, 128
		if Simulated {
			b = 1
		}
		m, tc, tok := smallShaped(b, tt)
		compareEval(t, m, tc, 8, tok, b, tt)
	})
}

func compareEval(t *testing.T, m *gpt2.Model, tc *transcoder.Transcoder, layer int, tok []int32, b, tt int) {
	t.Helper()
	if dev.opts.TF32 {
		t.Skip("with TF32 the GEMMs are not float32's")
	}
	var mids []analysis.Midcoder
	var params []*midcoder.Params
	var mlps []*midcoder.MLP
	for i, act := range []midcoder.Activation{midcoder.ReLU, midcoder.GeluNew} {
		p := midcoder.NewParams(tc.DSAE, m.DModel)
		p.KaimingUniform(uint64(20 + i))
		mlp := midcoder.NewMLP(m, layer, act)
		mids = append(mids, analysis.Midcoder{File: act.String(), Params: p, MLP: mlp})
		params, mlps = append(params, p), append(mlps, mlp)
	}
	ev, err := dev.NewEvaluator(m, layer, tc, params, mlps, tt)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	cpu := analysis.NewCPUEvalPass(m, layer, tc, mids, tt)
	defer cpu.Close()
	nv := 3 + len(mids)
	sums := func(p analysis.EvalPass) (ce, se []float64, y2 float64) {
		ce, se = make([]float64, nv), make([]float64, nv-2)
		for r := 0; r < b; r += p.Rows() { // in the pass's batches
			n := min(p.Rows(), b-r)
			if err := p.Batch(tok[r*tt:(r+n)*tt], n, tt, ce, se, &y2); err != nil {
				t.Fatal(err)
			}
		}
		return ce, se, y2
	}
	gce, gse, gy2 := sums(ev)
	wce, wse, wy2 := sums(cpu)
	rel := func(a, b float64) float64 { return math.Abs(a-b) / math.Max(math.Abs(b), 1e-300) }
	names := append([]string{"clean", "transcoder", "zero ablation"}, "midcoder relu", "midcoder gelu_new")
	for v := range wce {
		t.Logf("%s: CE sum %.9g on the device, %.9g on the CPU (relative %.2g)", names[v], gce[v], wce[v], rel(gce[v], wce[v]))
		if rel(gce[v], wce[v]) > 1e-5 {
			t.Errorf("%s: CE sum %.9g on the device, %.9g on the CPU", names[v], gce[v], wce[v])
		}
	}
	for k := range wse {
		if rel(gse[k], wse[k]) > 1e-4 {
			t.Errorf("reconstruction %d: squared error %.9g on the device, %.9g on the CPU", k, gse[k], wse[k])
		}
	}
	if rel(gy2, wy2) > 1e-4 {
		t.Errorf("Σ y²: %.9g on the device, %.9g on the CPU", gy2, wy2)
	}
}

// BenchmarkEvaluate is evaluate's work per cached token on the device
// with one midcoder, as analysis.BenchmarkEvaluate on the CPU: per batch
// of 32 rows of 128, GPT-2 small to block 8 once, then four
// variants (clean, transcoder, midcoder, zero ablation) through blocks
// 9–11, the unembedding and the cross-entropy.
func BenchmarkEvaluate(b *testing.B) {
	tt := 128
	rows := evalRows(tt)
	m, tc, tok := smallShaped(rows, tt)
	p := midcoder.NewParams(tc.DSAE, m.DModel)
	p.KaimingUniform(3)
	ev, err := dev.NewEvaluator(m, 8, tc, []*midcoder.Params{p}, []*midcoder.MLP{midcoder.NewMLP(m, 8, midcoder.ReLU)}, tt)
	if err != nil {
		b.Fatal(err)
	}
	defer ev.Close()
	ce, se := make([]float64, 4), make([]float64, 2)
	var y2 float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ev.Batch(tok, rows, tt, ce, se, &y2); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows*tt)/b.Elapsed().Seconds(), "tokens/s")
}

// The device's effect accumulator gives the CPU's statistics
// (analysis.EffectAccumulator): counts exactly, effect_consistency, the
// cosines and the mean norm to 1e-5, for ReLU and gelu_new MLPs, with and
// without the pinv baseline and W_dec, over batches of several sizes
// (entries of value 0 skipped; one batch larger than the buffers, which
// grow) and groups of 1,000 pairs that split features.
func TestEffectMatchesCPU(t *testing.T) {
	defer func(g int) { effectGroup = g }(effectGroup)
	effectGroup = 1000
	m, err := gpt2.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(30, 30))
	f := 300
	for _, act := range []midcoder.Activation{midcoder.ReLU, midcoder.GeluNew} {
		for _, withPinv := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/pinv=%v", act, withPinv), func(t *testing.T) {
				mlp := midcoder.NewMLP(m, 1, act)
				fit := midcoder.NewParams(f, m.DModel)
				fit.KaimingUniform(31)
				var pinv *midcoder.Params
				var wDec []float32
				if withPinv {
					pinv = midcoder.NewParams(f, m.DModel)
					pinv.KaimingUniform(32)
					wDec = testutil.RandNormal(r, f*m.DModel, 0.1)
				}
				cpu, err := analysis.NewEffectAccumulator(mlp, fit, pinv, wDec)
				if err != nil {
					t.Fatal(err)
				}
				ea, err := dev.NewEffectAccumulator(mlp, fit, pinv, 40)
				if err != nil {
					t.Fatal(err)
				}
				defer ea.Close()
				for _, rows := range []int{40, 7, 90} { // 90 > the 40 rows the buffers hold
					indptr, idx, val := csr(r, rows, f, 60) // ~60 features per row: several groups per batch
					for k := range val {
						if k%17 == 0 {
							val[k] = 0 // not a firing
						}
					}
					acts := &transcoder.Acts{Indptr: indptr, Indices: idx, Values: val}
					pre := testutil.RandNormal(r, rows*mlp.N, 1)
					cpu.Add(acts, pre)
					if err := ea.Add(acts, pre); err != nil {
						t.Fatal(err)
					}
				}
				count, sum, sumP, normSum, err := ea.Sums()
				if err != nil {
					t.Fatal(err)
				}
				got, want := analysis.EffectResultOf(count, sum, sumP, normSum, wDec, m.DModel), cpu.Result()
				if !slices.Equal(got.Count, want.Count) {
					t.Fatalf("counts differ: %v vs %v", got.Count[:10], want.Count[:10])
				}
				for _, c := range []struct {
					name      string
					got, want []float64
				}{{"effect_consistency", got.EffectConsistency, want.EffectConsistency}, {"cos_effect_dec", got.CosEffectDec, want.CosEffectDec},
					{"cos_effect_pinv", got.CosEffectPinv, want.CosEffectPinv}, {"mean_effect_norm", got.MeanEffectNorm, want.MeanEffectNorm}} {
					for fi := range c.want {
						g, w := c.got[fi], c.want[fi]
						if math.IsNaN(w) != math.IsNaN(g) || math.Abs(g-w) > 1e-5*math.Max(1, math.Abs(w)) {
							t.Errorf("%s of feature %d: %v on the device, %v on the CPU", c.name, fi, g, w)
							break
						}
					}
				}
			})
		}
	}
}

// BenchmarkEffectAdd is the report's effect statistics on the device at
// GPT-2 small's shapes, as analysis.BenchmarkEffectAdd/fit+pinv on the
// CPU: batches of analysis.ReportRows tokens with ~40 firing features
// each, the fitted midcoder and the pinv baseline; tokens/s.
func BenchmarkEffectAdd(b *testing.B) {
	m, tc, _ := smallShaped(1, 128)
	r := rand.New(rand.NewPCG(40, 40))
	mlp := midcoder.NewMLP(m, 8, midcoder.ReLU)
	fit, pinv := midcoder.NewParams(tc.DSAE, m.DModel), midcoder.NewParams(tc.DSAE, m.DModel)
	fit.KaimingUniform(41)
	pinv.KaimingUniform(42)
	rows := analysis.ReportRows
	ea, err := dev.NewEffectAccumulator(mlp, fit, pinv, rows)
	if err != nil {
		b.Fatal(err)
	}
	defer ea.Close()
	indptr, idx, val := csr(r, rows, tc.DSAE, 40)
	acts := &transcoder.Acts{Indptr: indptr, Indices: idx, Values: val}
	pre := testutil.RandNormal(r, rows*mlp.N, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ea.Add(acts, pre); err != nil {
			b.Fatal(err)
		}
	}
	// The timing ends when the device has done the adds: Sums' copies and
	// its pinv product run once per report, as the CPU benchmark leaves
	// Result out.
	if err := func() error { defer dev.enter()(); return dev.sync("effect add") }(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if _, _, _, _, err := ea.Sums(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "tokens/s")
}

// A profile counts every launch and GEMM of a pass by kernel and shape:
// the tiny model's forward to block 2 is 3 blocks of two LayerNorms, two
// batched attention GEMMs and four linear GEMMs each.
func TestProfile(t *testing.T) {
	m, err := gpt2.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	b, tt := 2, 8
	f, err := dev.NewForward(m, []int{2}, nil, b, tt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Free()
	n := b * tt * m.DModel
	dev.StartProfile()
	if err := f.Run(gpt2.RandomTokens(b*tt, m.DVocab, 1), b, tt, []cachebuild.Capture{{X: make([]float32, n), Y: make([]float32, n)}}); err != nil {
		t.Fatal(err)
	}
	stats, err := dev.StopProfile()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	gemms := 0
	for _, s := range stats {
		calls[s.Name] = s.Calls
		if strings.HasPrefix(s.Name, "gemm ") {
			gemms += s.Calls
		}
		if !(s.Ms >= 0) {
			t.Errorf("%s: %v ms", s.Name, s.Ms)
		}
		t.Logf("%-40s %4d calls %9.3f ms", s.Name, s.Calls, s.Ms)
	}
	if calls["layernorm_pre"] != 6 || calls["embed"] != 1 || gemms != 12 || calls[fmt.Sprintf("batched gemm NT %d × %d×%d×%d", b*m.NHead, tt, tt, m.DHead)] != 3 {
		t.Errorf("profile counted %v", calls)
	}
	if _, err := dev.StopProfile(); err == nil {
		t.Error("a second StopProfile returned no error")
	}
}

// BenchmarkFitStepProfile prints where a notebook fit step's device time
// goes (B = 64 rows of 128 from token ids), per kernel and GEMM shape,
// over 10 steps after 3 of warm-up.
func BenchmarkFitStepProfile(b *testing.B) {
	rows, tt := 64, 128
	m, tc, _ := smallShaped(rows, tt)
	tok := gpt2.RandomTokens(8*rows*tt, m.DVocab, 5)
	fit, _ := notebookFit(b, dev, m, tc, tok, rows, tt)
	defer fit.Close()
	step := func() {
		if _, _, err := fit.Step(context.Background(), rows, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		step()
	}
	const steps = 10
	for i := 0; i < b.N; i++ {
		dev.StartProfile()
		for s := 0; s < steps; s++ {
			step()
		}
		stats, err := dev.StopProfile()
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			continue
		}
		total := 0.0
		for _, s := range stats {
			total += s.Ms
		}
		b.Logf("device time per step %.3f ms, by kernel and GEMM shape:", total/steps)
		for _, s := range stats {
			b.Logf("  %-44s %5.1f calls %9.3f ms %5.1f%%", s.Name, float64(s.Calls)/steps, s.Ms/steps, 100*s.Ms/total)
		}
	}
}
