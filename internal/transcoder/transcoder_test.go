package transcoder

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

// Golden values come from testdata/gen/gen_fixtures.py: PyTorch computes
// the encoder's (x − b_dec) @ W_enc + b_enc in float64 from the same .pt
// files (stored as float32), on the golden x of testdata/golden/gpt2_hooks.safetensors. The smallest
// |hidden_pre| there is 2.9e-5, so float32 rounding cannot flip a ReLU and
// the active sets must match exactly.
const (
	tinyDir     = "../../testdata/tiny-transcoders"
	goldenTC    = "../../testdata/golden/transcoder.safetensors"
	goldenHooks = "../../testdata/golden/gpt2_hooks.safetensors"
	absTol      = 1e-5
	relTol      = 1e-5
)

func TestEncodeDecodeMatchPyTorch(t *testing.T) {
	g := testutil.Golden(t, goldenTC)
	hooks := testutil.Golden(t, goldenHooks)
	for _, tc := range []struct {
		name, path, acts, recon string
		layer                   int
	}{
		{"layer0", filepath.Join(tinyDir, FileName(0, 64)), "acts.0", "recon.0", 0},
		{"layer1", filepath.Join(tinyDir, FileName(1, 64)), "acts.1", "recon.1", 1},
		{"layer2", filepath.Join(tinyDir, FileName(2, 64)), "acts.2", "recon.2", 2},
		{"legacy container", filepath.Join(tinyDir, "legacy", FileName(1, 64)), "acts.1", "recon.1", 1},
		{"float16 weights", filepath.Join(tinyDir, "fp16", FileName(1, 64)), "acts_fp16.1", "recon_fp16.1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Load(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if tr.DIn != 16 || tr.DOut != 16 || tr.DSAE != 64 || tr.Layer != tc.layer ||
				tr.HookPoint != fmt.Sprintf("blocks.%d.ln2.hook_normalized", tc.layer) || tr.ModelName != "gpt2-small" {
				t.Fatalf("Load: d_in %d d_out %d d_sae %d layer %d hook %q model %q", tr.DIn, tr.DOut, tr.DSAE, tr.Layer, tr.HookPoint, tr.ModelName)
			}
			x := hooks[fmt.Sprint("x.", tc.layer)]
			var a Acts
			tr.NewEncoder().Encode(&a, x, 32)
			want := g[tc.acts]
			got := a.Dense(64)
			for i := range want {
				if (want[i] > 0) != (got[i] > 0) {
					t.Fatalf("feature %d of token %d: active %v, PyTorch says %v", i%64, i/64, got[i] > 0, want[i] > 0)
				}
			}
			testutil.Close(t, tc.acts, got, want, absTol, relTol)
			recon := make([]float32, 32*16)
			tr.Decode(recon, &a)
			testutil.Close(t, tc.recon, recon, g[tc.recon], absTol, relTol)
			// The fast encoder equals the dense float64 reference.
			ref := tr.EncodeNaive(x, 32)
			for i := range ref {
				ref[i] = max(ref[i], 0)
			}
			testutil.Close(t, "EncodeNaive", got, ref, 1e-6, 1e-6)
		})
	}
}

// Encoding more rows than one dense chunk (encodeRows) stitches chunks into
// one CSR correctly.
func TestEncodeAcrossChunks(t *testing.T) {
	tr := Random(8, 40, 6, 7)
	m := encodeRows*2 + 3
	x := make([]float32, m*8)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.37))
	}
	var a Acts
	tr.NewEncoder().Encode(&a, x, m)
	if a.Rows() != m {
		t.Fatalf("Rows() = %d, want %d", a.Rows(), m)
	}
	ref := tr.EncodeNaive(x, m)
	for i := range ref {
		ref[i] = max(ref[i], 0)
	}
	testutil.Close(t, "Encode", a.Dense(40), ref, 1e-6, 1e-6)
	for r := 0; r < m; r++ {
		idx, _ := a.Row(r)
		for i := 1; i < len(idx); i++ {
			if idx[i] <= idx[i-1] {
				t.Fatalf("row %d indices not ascending: %v", r, idx)
			}
		}
	}
}

func TestSparsity(t *testing.T) {
	g := testutil.Golden(t, goldenTC)
	for l := 0; l < 3; l++ {
		s, err := LoadSparsity(filepath.Join(tinyDir, SparsityName(l, 64)))
		if err != nil {
			t.Fatal(err)
		}
		want := g[fmt.Sprint("log_feature_sparsity.", l)]
		testutil.Close(t, "sparsity", s, want, 0, 0)
		live := 0
		for _, v := range want {
			if v > -4 {
				live++
			}
		}
		if got := CountLive(s); got != live {
			t.Errorf("CountLive = %d, want %d", got, live)
		}
	}
	// The fixture holds exactly −4 (not live: the notebook's test is > −4).
	if CountLive([]float32{-4, -3.9999, -10, 0}) != 2 {
		t.Error("CountLive boundary")
	}
}

func TestFind(t *testing.T) {
	model, sparsity, err := Find(tinyDir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(model) != FileName(1, 64) || filepath.Base(sparsity) != SparsityName(1, 64) {
		t.Errorf("Find = %s, %s", model, sparsity)
	}
	if _, _, err := Find(tinyDir, 7); err == nil || !strings.Contains(err.Error(), "blocks.7") {
		t.Errorf("Find(layer 7) error = %v", err)
	}
	// Two widths for one layer is ambiguous.
	dir := t.TempDir()
	for _, w := range []int{64, 128} {
		if err := os.WriteFile(filepath.Join(dir, FileName(3, w)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Find(dir, 3); err == nil || !strings.Contains(err.Error(), "several") {
		t.Errorf("Find(two widths) error = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(tinyDir, FileName(1, 64)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)/2], ""},
		{"empty", nil, ""},
		{"sparsity file instead", mustRead(t, filepath.Join(tinyDir, SparsityName(1, 64))), "state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".pt")
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load error = %v, want one naming %s and containing %q", err, p, c.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.pt")); err == nil {
		t.Error("Load(missing) succeeded")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
