package gpt2

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// Golden values come from testdata/gen/gen_fixtures.py (PyTorch 1.13, two
// independent float64 paths — the unprocessed HF forward and TransformerLens
// processing + forward — that agree to 9e-15; see testdata/gen/README.md).
// Regenerate with `/usr/bin/python3 testdata/gen/gen_fixtures.py`.
const (
	tinyDir      = "../../testdata/tiny-gpt2"
	legacyDir    = "../../testdata/tiny-gpt2-bin-legacy"
	zipDir       = "../../testdata/tiny-gpt2-bin-zip"
	goldenHooks  = "../../testdata/golden/gpt2_hooks.safetensors"
	goldenWeight = "../../testdata/golden/gpt2_processed.safetensors"
)

// Tolerance for float32 forward values against the float64 golden: the
// generator measured float32 PyTorch at ≤ 5.2e-6 from it on these fixtures;
// 1e-5 + 1e-5·|want| leaves a margin without hiding an error in any step.
const absTol, relTol = 1e-5, 1e-5

func goldenTokens(t *testing.T) []int32 {
	t.Helper()
	f, err := safetensors.Open(goldenHooks)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := f.Int32("tokens")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func loadTiny(t *testing.T, dir string) *Model {
	t.Helper()
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Processed weights match TransformerLens's processing done by PyTorch.
// Processing is done in float64 both here and there, so the only
// difference is the final float32 rounding (and summation order): 1e-6.
func TestProcessedWeightsMatchTransformerLens(t *testing.T) {
	m := loadTiny(t, tinyDir)
	g := testutil.Golden(t, goldenWeight)
	c, h, d := m.DModel, m.NHead, m.DHead
	for l, blk := range m.Blocks {
		p := fmt.Sprintf("blocks.%d.", l)
		for x, name := range []string{"Q", "K", "V"} {
			w := make([]float32, h*c*d) // [H, C, D]
			b := make([]float32, h*d)   // [H, D]
			for i := 0; i < h; i++ {
				for mm := 0; mm < c; mm++ {
					for k := 0; k < d; k++ {
						w[(i*c+mm)*d+k] = blk.WQKV[mm*3*c+x*c+i*d+k]
					}
				}
				for k := 0; k < d; k++ {
					b[i*d+k] = blk.BQKV[x*c+i*d+k]
				}
			}
			testutil.Close(t, p+"attn.W_"+name, w, g[p+"attn.W_"+name], 1e-6, 1e-6)
			testutil.Close(t, p+"attn.b_"+name, b, g[p+"attn.b_"+name], 1e-6, 1e-6)
		}
		testutil.Close(t, p+"attn.W_O", blk.WO, g[p+"attn.W_O"], 1e-6, 1e-6) // [H, D, C] = our (C, C) rows
		testutil.Close(t, p+"attn.b_O", blk.BO, g[p+"attn.b_O"], 1e-6, 1e-6)
		testutil.Close(t, p+"mlp.W_in", blk.WIn, g[p+"mlp.W_in"], 1e-6, 1e-6)
		testutil.Close(t, p+"mlp.b_in", blk.BIn, g[p+"mlp.b_in"], 1e-6, 1e-6)
		testutil.Close(t, p+"mlp.W_out", blk.WOut, g[p+"mlp.W_out"], 1e-6, 1e-6)
		testutil.Close(t, p+"mlp.b_out", blk.BOut, g[p+"mlp.b_out"], 1e-6, 1e-6)
	}
	testutil.Close(t, "pos_embed.W_pos", m.WPos, g["pos_embed.W_pos"], 1e-6, 1e-6)
	testutil.Close(t, "embed.W_E_head", m.WE[:256*c], g["embed.W_E_head"], 1e-6, 1e-6)
	testutil.Close(t, "embed.W_E_last", m.WE[(m.DVocab-1)*c:], g["embed.W_E_last"], 1e-6, 1e-6)
	testutil.Close(t, "unembed.b_U", m.BU, g["unembed.b_U"], 1e-6, 1e-6)
	head := make([]float32, 0, c*256)
	for mm := 0; mm < c; mm++ {
		head = append(head, m.WU[mm*m.DVocab:mm*m.DVocab+256]...)
	}
	testutil.Close(t, "unembed.W_U_head", head, g["unembed.W_U_head"], 1e-6, 1e-6)
}

// Invariants of TransformerLens's weight processing: writing weights have zero mean over d_model,
// reading weights zero mean over d_model, b_V is folded away.
func TestProcessingInvariants(t *testing.T) {
	m := loadTiny(t, tinyDir)
	c := m.DModel
	rowMeans := func(what string, w []float32, rows, cols int) {
		for r := 0; r < rows; r++ {
			var s float64
			for _, v := range w[r*cols : (r+1)*cols] {
				s += float64(v)
			}
			if math.Abs(s/float64(cols)) > 1e-6 {
				t.Fatalf("%s row %d has mean %g, want 0", what, r, s/float64(cols))
			}
		}
	}
	rowMeans("W_E", m.WE, m.DVocab, c)
	rowMeans("W_pos", m.WPos, m.NCtx, c)
	for l, b := range m.Blocks {
		rowMeans(fmt.Sprint("W_O ", l), b.WO, c, c)
		rowMeans(fmt.Sprint("W_out ", l), b.WOut, m.DMLP, c)
		rowMeans(fmt.Sprint("b_O ", l), b.BO, 1, c)
		rowMeans(fmt.Sprint("W_in^T ", l), kernels.Transpose(b.WIn, c, m.DMLP), m.DMLP, c)
		for _, v := range b.BQKV[2*c:] {
			if v != 0 {
				t.Fatalf("layer %d: b_V not folded: %g", l, v)
			}
		}
	}
	rowMeans("W_U^T", kernels.Transpose(m.WU, c, m.DVocab), m.DVocab, c)
	rowMeans("W_U rows (centre unembed)", m.WU, c, m.DVocab)
}

// Every hook value equals TransformerLens's.
func TestForwardHooksMatchTransformerLens(t *testing.T) {
	m := loadTiny(t, tinyDir)
	g := testutil.Golden(t, goldenHooks)
	tok := goldenTokens(t)
	b, tt := 2, 16
	ws := m.NewWorkspace(b * tt)
	seen := map[string]bool{}
	names := map[string]string{"hook_attn_out": "attn_out", "hook_resid_mid": "resid_mid",
		"ln2.hook_normalized": "x", "hook_mlp_out": "y", "hook_resid_post": "resid_post"}
	hooks := &Hooks{Observe: func(hook string, layer int, v []float32) {
		name := fmt.Sprintf("%s.%d", names[hook], layer)
		testutil.Close(t, name, v, g[name], absTol, relTol)
		seen[name] = true
	}}
	ce, err := m.Loss(ws, tok, b, tt, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 5*m.NLayer {
		t.Errorf("saw %d hooks, want %d", len(seen), 5*m.NLayer)
	}
	testutil.Close(t, "ce", ce, g["ce"], absTol, relTol)
	var mean float64
	for _, v := range ce {
		mean += float64(v) / float64(len(ce))
	}
	testutil.Close(t, "loss", []float32{float32(mean)}, g["loss"], absTol, relTol)

	for l := 0; l < m.NLayer; l++ {
		x, y, err := m.RunToBlock(ws, tok, b, tt, l, nil)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Close(t, fmt.Sprint("RunToBlock x.", l), x, g[fmt.Sprint("x.", l)], absTol, relTol)
		testutil.Close(t, fmt.Sprint("RunToBlock y.", l), y, g[fmt.Sprint("y.", l)], absTol, relTol)
		// Invariant: x has zero mean and unit variance per token, up to eps.
		c := m.DModel
		for r := 0; r < b*tt; r++ {
			var s, ss float64
			for _, v := range x[r*c : (r+1)*c] {
				s += float64(v)
				ss += float64(v) * float64(v)
			}
			if math.Abs(s/float64(c)) > 1e-6 || math.Abs(ss/float64(c)-1) > 1e-3 {
				t.Fatalf("x.%d token %d: mean %g, mean square %g", l, r, s/float64(c), ss/float64(c))
			}
		}
	}
}

// Splicing a replacement into hook_mlp_out, and zero ablation, give
// TransformerLens's losses.
func TestLossWithSplice(t *testing.T) {
	m := loadTiny(t, tinyDir)
	g := testutil.Golden(t, goldenHooks)
	tok := goldenTokens(t)
	ws := m.NewWorkspace(32)
	for l := 0; l < m.NLayer; l++ {
		splice := g[fmt.Sprint("splice.", l)]
		ce, err := m.Loss(ws, tok, 2, 16, &Hooks{SpliceLayer: l, Splice: func(x, y []float32) { copy(y, splice) }})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Close(t, fmt.Sprint("ce_splice.", l), ce, g[fmt.Sprint("ce_splice.", l)], absTol, relTol)
		ce, err = m.Loss(ws, tok, 2, 16, &Hooks{SpliceLayer: l, Splice: func(x, y []float32) { clear(y) }})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Close(t, fmt.Sprint("ce_zero.", l), ce, g[fmt.Sprint("ce_zero.", l)], absTol, relTol)
	}
}

// Processing leaves log-softmax unchanged: logits − logsumexp of the
// processed model equal the HF model's log-probabilities (golden path (a)),
// checked through the golden processed logits' head and tail.
func TestLogitsMatch(t *testing.T) {
	m := loadTiny(t, tinyDir)
	g := testutil.Golden(t, goldenHooks)
	tok := goldenTokens(t)
	ws := m.NewWorkspace(32)
	c, v := m.DModel, m.DVocab
	var xn []float32
	if _, err := m.Loss(ws, tok, 2, 16, nil); err != nil {
		t.Fatal(err)
	}
	xn = ws.xn[:32*c] // ln_final.hook_normalized, left in the workspace
	head, tail := make([]float32, 0, 32*64), make([]float32, 0, 32*64)
	for r := 0; r < 32; r++ {
		for _, j := range []int{0, v - 64} {
			for k := j; k < j+64; k++ {
				s := float64(m.BU[k])
				for i := 0; i < c; i++ {
					s += float64(xn[r*c+i]) * float64(m.WU[i*v+k])
				}
				if j == 0 {
					head = append(head, float32(s))
				} else {
					tail = append(tail, float32(s))
				}
			}
		}
	}
	testutil.Close(t, "logits_head", head, g["logits_head"], absTol, relTol)
	testutil.Close(t, "logits_tail", tail, g["logits_tail"], absTol, relTol)
}

// The three container formats of the same checkpoint load to identical
// processed weights.
func TestLoadFormatsAgree(t *testing.T) {
	ref := loadTiny(t, tinyDir)
	for _, dir := range []string{legacyDir, zipDir} {
		m := loadTiny(t, dir)
		for l := range ref.Blocks {
			a, b := ref.Blocks[l], m.Blocks[l]
			for i, pair := range [][2][]float32{{a.WQKV, b.WQKV}, {a.BQKV, b.BQKV}, {a.WO, b.WO}, {a.BO, b.BO}, {a.WIn, b.WIn}, {a.BIn, b.BIn}, {a.WOut, b.WOut}, {a.BOut, b.BOut}} {
				testutil.Close(t, fmt.Sprintf("%s block %d tensor %d", dir, l, i), pair[1], pair[0], 0, 0)
			}
		}
		testutil.Close(t, dir+" W_E", m.WE, ref.WE, 0, 0)
		testutil.Close(t, dir+" W_U", m.WU, ref.WU, 0, 0)
	}
}

func TestBadInput(t *testing.T) {
	m := loadTiny(t, tinyDir)
	ws := m.NewWorkspace(64)
	cases := []struct {
		name   string
		tokens []int32
		b, t   int
		layer  int
		want   string
	}{
		{"id beyond vocab", []int32{1, 50257}, 1, 2, 0, "outside the vocabulary"},
		{"negative id", []int32{-1, 2}, 1, 2, 0, "outside the vocabulary"},
		{"too long", make([]int32, 33), 1, 33, 0, "longer than the model's context"},
		{"layer out of range", []int32{1, 2}, 1, 2, 3, "out of range"},
		{"shape", []int32{1, 2, 3}, 2, 2, 0, "do not form"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := m.RunToBlock(ws, c.tokens, c.b, c.t, c.layer, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("RunToBlock error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(tinyDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(want string) {
		t.Helper()
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Load error = %v, want one containing %q", err, want)
		}
	}
	expect("config.json")
	write("config.json", "{")
	expect("not a valid config.json")
	write("config.json", string(cfg))
	expect("neither model.safetensors nor pytorch_model.bin")
	write("model.safetensors", "garbage")
	expect("model.safetensors")
	// A config whose shapes disagree with the weights.
	write("config.json", strings.Replace(string(cfg), `"n_embd": 16`, `"n_embd": 32`, 1))
	st, err := os.ReadFile(filepath.Join(tinyDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	write("model.safetensors", string(st))
	expect("has shape")
}

// LossFrom, continuing from resid_mid + replacement after block l, gives
// the same losses as Loss with the replacement spliced in (golden
// ce_splice.l and ce_zero.l).
func TestLossFrom(t *testing.T) {
	m := loadTiny(t, tinyDir)
	g := testutil.Golden(t, goldenHooks)
	tok := goldenTokens(t)
	ws := m.NewWorkspace(32)
	for l := 0; l < m.NLayer; l++ {
		var residMid []float32
		_, _, err := m.RunToBlock(ws, tok, 2, 16, l, &Hooks{Observe: func(hook string, layer int, v []float32) {
			if hook == "hook_resid_mid" && layer == l {
				residMid = append([]float32(nil), v...)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			splice []float32
		}{{"ce_splice", g[fmt.Sprint("splice.", l)]}, {"ce_zero", make([]float32, 32*16)}} {
			post := make([]float32, len(residMid))
			for i := range post {
				post[i] = residMid[i] + c.splice[i]
			}
			ce, err := m.LossFrom(ws, tok, 2, 16, l, post)
			if err != nil {
				t.Fatal(err)
			}
			testutil.Close(t, fmt.Sprint(c.name, ".", l), ce, g[fmt.Sprint(c.name, ".", l)], absTol, relTol)
		}
	}
}

// A model loaded in part refuses the passes it lacks weights for, with an
// error, instead of running on nil weights.
func TestPartialModelRefusesPasses(t *testing.T) {
	m, err := LoadParts(tinyDir, MLP(1))
	if err != nil {
		t.Fatal(err)
	}
	ws := m.NewWorkspace(16)
	tok := make([]int32, 16)
	if _, _, err := m.RunToBlock(ws, tok, 1, 16, 1, nil); err == nil || !strings.Contains(err.Error(), "RunToBlock needs") {
		t.Errorf("RunToBlock on an MLP-only model: %v", err)
	}
	if _, err := m.Loss(ws, tok, 1, 16, nil); err == nil || !strings.Contains(err.Error(), "Loss needs") {
		t.Errorf("Loss on an MLP-only model: %v", err)
	}
	x, y, h := make([]float32, 16*m.DModel), make([]float32, 16*m.DModel), make([]float32, 16*m.DMLP)
	if err := m.MLPOut(1, x, y, h, 16); err != nil {
		t.Errorf("MLPOut(1) on block 1's MLP: %v", err)
	}
	if err := m.MLPOut(2, x, y, h, 16); err == nil {
		t.Error("MLPOut(2) on block 1's MLP only: no error")
	}
}
