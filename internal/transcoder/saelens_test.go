package transcoder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

const saelensDir = "../../testdata/tiny-transcoders-saelens"

// The same weights in SAELens form (the input bias folded into b_enc) give
// the pickle's acts and reconstruction: the committed fixture, written by
// testdata/gen/gen_saelens.py with PyTorch, and the directory WriteSAELens
// writes here.
func TestSAELensMatchesPickle(t *testing.T) {
	pickle, err := Load(filepath.Join(tinyDir, FileName(1, 64)))
	if err != nil {
		t.Fatal(err)
	}
	written := filepath.Join(t.TempDir(), "layer-1")
	if err := WriteSAELens(written, pickle); err != nil {
		t.Fatal(err)
	}
	x := testutil.Golden(t, goldenHooks)["x.1"]
	var want Acts
	pickle.NewEncoder().Encode(&want, x, 32)
	wantRecon := make([]float32, 32*16)
	pickle.Decode(wantRecon, &want)
	fixture := filepath.Join(saelensDir, "layer-1")
	for _, path := range []string{fixture, filepath.Join(fixture, SAELensWeights), written} {
		t.Run(path, func(t *testing.T) {
			tr, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if tr.DIn != 16 || tr.DOut != 16 || tr.DSAE != 64 || tr.Layer != 1 || tr.Threshold != nil ||
				tr.HookPoint != "blocks.1.ln2.hook_normalized" || tr.OutHookPoint != "blocks.1.hook_mlp_out" || tr.ModelName != "gpt2-small" ||
				filepath.Base(tr.Path) != SAELensWeights {
				t.Fatalf("Load: %+v", tr)
			}
			var got Acts
			tr.NewEncoder().Encode(&got, x, 32)
			if !slices.Equal(got.Indptr, want.Indptr) || !slices.Equal(got.Indices, want.Indices) {
				t.Fatalf("active features differ from the pickle's")
			}
			testutil.Close(t, "acts", got.Values, want.Values, 1e-6, 1e-5)
			recon := make([]float32, 32*16)
			tr.Decode(recon, &got)
			testutil.Close(t, "recon", recon, wantRecon, 1e-6, 1e-5)
		})
	}
	// Find picks the layer's directory among its siblings by its cfg.json,
	// with the sparsity file next to it.
	root := filepath.Dir(written)
	other := filepath.Join(root, "some", "width_64")
	tc0, _ := Load(filepath.Join(tinyDir, FileName(0, 64)))
	if err := WriteSAELens(other, tc0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir   string
		layer int
		want  string
	}{{root, 1, written}, {root, 0, other}, {saelensDir, 1, fixture}, {fixture, 1, fixture}} {
		w, sp, err := Find(c.dir, c.layer)
		if err != nil || w != filepath.Join(c.want, SAELensWeights) {
			t.Errorf("Find(%s, %d) = %q, %v, want %s", c.dir, c.layer, w, err, c.want)
		}
		if (sp != "") != (c.want == fixture) {
			t.Errorf("Find(%s, %d): sparsity %q", c.dir, c.layer, sp)
		}
	}
	if _, _, err := Find(root, 2); err == nil || !strings.Contains(err.Error(), "nor a SAELens") {
		t.Errorf("Find(layer 2) error = %v", err)
	}
	s, err := LoadSparsity(filepath.Join(fixture, SAELensSparsity))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := LoadSparsity(filepath.Join(tinyDir, SparsityName(1, 64)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Close(t, "sparsity", s, ref, 0, 0)
}

// A JumpReLU transcoder keeps a feature where its pre-activation exceeds
// both 0 and its threshold (strictly), checked by hand.
func TestJumpReLU(t *testing.T) {
	// W_enc = identity on 3 features of 3 inputs, b_enc 0: hidden_pre = x.
	tc := &Transcoder{DIn: 3, DOut: 1, DSAE: 3, Layer: -1,
		WEnc: []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}, BEnc: make([]float32, 3),
		WDec: []float32{1, 10, 100}, BDec: make([]float32, 3), BDecOut: []float32{0.5},
		Threshold:    []float32{0.5, -1, 2},
		HookPoint:    "blocks.0.hook_mlp_in",
		ModelName:    "gpt2",
		OutHookPoint: "blocks.0.hook_mlp_out"}
	dir := filepath.Join(t.TempDir(), "jr")
	if err := WriteSAELens(dir, tc); err != nil {
		t.Fatal(err)
	}
	tr, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Threshold, tc.Threshold) || tr.Layer != 0 {
		t.Fatalf("threshold %v, layer %d", tr.Threshold, tr.Layer)
	}
	x := []float32{
		0.6, 0.3, 2.5, // above 0.5; above −1 and 0; above 2
		0.5, -0.5, 2, // at the threshold: off; above −1 but below 0: off; at 2: off
		0.4, 0.01, 1.9, // below; just above 0; below
	}
	var a Acts
	tr.NewEncoder().Encode(&a, x, 3)
	if !slices.Equal(a.Indptr, []int64{0, 3, 3, 4}) || !slices.Equal(a.Indices, []int32{0, 1, 2, 1}) ||
		!slices.Equal(a.Values, []float32{0.6, 0.3, 2.5, 0.01}) {
		t.Errorf("acts %v %v %v", a.Indptr, a.Indices, a.Values)
	}
	out := make([]float32, 3)
	tr.Decode(out, &a)
	testutil.Close(t, "decode", out, []float32{0.5 + 0.6 + 3 + 250, 0.5, 0.5 + 0.1}, 1e-6, 1e-6)
}

// writeDir writes a SAELens directory with the given cfg.json and tensors
// (all float32, zero-filled, of the given shapes).
func writeDir(t *testing.T, cfg map[string]any, shapes map[string][]int) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, SAELensConfig), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		k := 1
		for _, d := range shapes[n] {
			k *= d
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: shapes[n], Data: make([]byte, 4*k)})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, SAELensWeights), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Files Load refuses, each with an error that says why.
func TestSAELensErrors(t *testing.T) {
	goodCfg := func() map[string]any {
		return map[string]any{"architecture": "transcoder", "d_in": 4, "d_sae": 8, "d_out": 4,
			"apply_b_dec_to_input": false, "normalize_activations": "none",
			"metadata": map[string]any{"hook_name": "blocks.3.ln2.hook_normalized", "hook_name_out": "blocks.3.hook_mlp_out"}}
	}
	goodShapes := func() map[string][]int {
		return map[string][]int{"W_enc": {4, 8}, "b_enc": {8}, "W_dec": {8, 4}, "b_dec": {4}}
	}
	if tr, err := Load(writeDir(t, goodCfg(), goodShapes())); err != nil || tr.Layer != 3 || tr.Threshold != nil {
		t.Fatalf("the good case: %v", err)
	}
	// Older SAELens: hook names at the top level, no architecture.
	old := map[string]any{"d_in": 4, "d_sae": 8, "hook_name": "blocks.2.hook_mlp_in", "activation_fn_str": "relu"}
	if tr, err := Load(writeDir(t, old, goodShapes())); err != nil || tr.Layer != 2 {
		t.Fatalf("an older cfg.json: %v", err)
	}
	for _, c := range []struct {
		name   string
		cfg    func(map[string]any)
		shapes func(map[string][]int)
		want   string
	}{
		{"missing b_enc", nil, func(s map[string][]int) { delete(s, "b_enc") }, `no tensor "b_enc"`},
		{"missing W_dec", nil, func(s map[string][]int) { delete(s, "W_dec") }, `no tensor "W_dec"`},
		{"b_dec of d_in", func(c map[string]any) { c["d_out"] = 5 }, func(s map[string][]int) { s["W_dec"] = []int{8, 5} }, "b_dec has shape [4], want [5]"},
		{"b_enc too short", nil, func(s map[string][]int) { s["b_enc"] = []int{7} }, "b_enc has shape [7], want [8]"},
		{"W_enc rank", nil, func(s map[string][]int) { s["W_enc"] = []int{32} }, "W_enc has shape [32], want 2 dimensions"},
		{"no features", func(c map[string]any) { c["d_sae"] = 0 }, func(s map[string][]int) {
			s["W_enc"], s["b_enc"], s["W_dec"] = []int{4, 0}, []int{0}, []int{0, 4}
		}, "at least one input, feature and output"},
		{"cfg disagrees", func(c map[string]any) { c["d_sae"] = 16 }, nil, "d_sae 16, the weights 8"},
		{"W_skip", nil, func(s map[string][]int) { s["W_skip"] = []int{4, 4} }, "skip transcoder (it has W_skip)"},
		{"skip architecture", func(c map[string]any) { c["architecture"] = "jumprelu_skip_transcoder" }, nil, "skip transcoder"},
		{"plain SAE", func(c map[string]any) { c["architecture"] = "standard" }, nil, `architecture "standard" is not a transcoder`},
		{"JumpReLU without threshold", func(c map[string]any) { c["architecture"] = "jumprelu_transcoder" }, nil, `no tensor "threshold"`},
		{"threshold of a ReLU transcoder", nil, func(s map[string][]int) { s["threshold"] = []int{8} }, "weights have a threshold"},
		{"threshold shape", func(c map[string]any) { c["architecture"] = "jumprelu_transcoder" }, func(s map[string][]int) { s["threshold"] = []int{4} }, "threshold has shape [4], want [8]"},
		{"topk", func(c map[string]any) { c["activation_fn"] = "topk" }, nil, `activation function "topk"`},
		{"input bias", func(c map[string]any) { c["apply_b_dec_to_input"] = true }, nil, "apply_b_dec_to_input"},
		{"normalised input", func(c map[string]any) { c["normalize_activations"] = "layer_norm" }, nil, `normalize_activations "layer_norm"`},
		{"residual hook", func(c map[string]any) { c["metadata"] = map[string]any{"hook_name": "blocks.3.hook_resid_pre"} }, nil, `hook_name "blocks.3.hook_resid_pre"`},
		{"other out hook", func(c map[string]any) {
			c["metadata"] = map[string]any{"hook_name": "blocks.3.ln2.hook_normalized", "hook_name_out": "blocks.4.hook_mlp_out"}
		}, nil, `hook_name_out "blocks.4.hook_mlp_out"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, shapes := goodCfg(), goodShapes()
			if c.cfg != nil {
				c.cfg(cfg)
			}
			if c.shapes != nil {
				c.shapes(shapes)
			}
			dir := writeDir(t, cfg, shapes)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("Load error = %v, want one naming %s and containing %q", err, dir, c.want)
			}
		})
	}
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "without a SAELens") {
		t.Errorf("Load(empty dir) error = %v", err)
	}
	os.WriteFile(filepath.Join(dir, SAELensWeights), nil, 0o644)
	if _, err := Load(filepath.Join(dir, SAELensWeights)); err == nil || !strings.Contains(err.Error(), SAELensConfig) {
		t.Errorf("Load(weights without cfg.json) error = %v", err)
	}
}
