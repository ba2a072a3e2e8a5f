package analysis

import (
	"strconv"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Golden values from testdata/gen/gen_pinv.py (PyTorch 1.13
// torch.linalg.pinv); regenerate with `/usr/bin/python3 testdata/gen/gen_pinv.py`.
const (
	goldenPinv   = "../../testdata/golden/pinv.safetensors"
	goldenWeight = "../../testdata/golden/gpt2_processed.safetensors"
	tcFile       = "../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"
)

func goldenRanks(t *testing.T) (layer1, rank2 int) {
	f, err := safetensors.Open(goldenPinv)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md := f.Metadata()
	layer1, _ = strconv.Atoi(md["layer1.rank"])
	rank2, _ = strconv.Atoi(md["rank2.rank"])
	return layer1, rank2
}

// The baseline of the layer-1 fixtures: W_in @ W_out is 16×16 of rank 15
// (the centring's all-ones null direction, σ ≈ 1e-14 here), so the cut-off
// decides the result. Against torch in float64 the only difference is the
// SVD's rounding: 1e-6 relative. Against the notebook's float32 computation,
// float32's rounding of the SVD (condition number σ_max/σ_min ≈ 100 among
// the kept values): 1e-3 relative of the largest value.
func TestPinvBaselineMatchesTorch(t *testing.T) {
	g := testutil.Golden(t, goldenPinv)
	w := testutil.Golden(t, goldenWeight)
	tc, err := transcoder.Load(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	got, sp, err := PinvBaseline(tc.WDec, w["blocks.1.mlp.W_in"], w["blocks.1.mlp.W_out"], 64, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	rank1, _ := goldenRanks(t)
	if sp.Rank != rank1 || sp.Rank != 15 {
		t.Errorf("rank %d, want %d (torch) = 15", sp.Rank, rank1)
	}
	sigma := make([]float32, len(sp.Sigma))
	for i, s := range sp.Sigma {
		sigma[i] = float32(s)
	}
	testutil.Close(t, "sigma", sigma[:15], g["layer1.sigma"][:15], 1e-6, 1e-6)
	testutil.Close(t, "W_mid vs torch float64", got, g["layer1.W_mid_f64"], 1e-6*testutil.MaxAbs(g["layer1.W_mid_f64"]), 1e-6)
	testutil.Close(t, "W_mid vs torch float32", got, g["layer1.W_mid_f32"], 1e-3*testutil.MaxAbs(g["layer1.W_mid_f32"]), 0)
	// The rule matters: W_in @ W_out computed in float32, as torch does it,
	// leaves the all-ones direction at σ ≈ 1e-7·σ_max. torch's float32
	// cut-off drops it; float64's own ε would keep it and blow the
	// pseudo-inverse up.
	prod := make([]float64, 16*16)
	wIn, wOut := w["blocks.1.mlp.W_in"], w["blocks.1.mlp.W_out"]
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			var s float32
			for k := 0; k < 64; k++ {
				s += wIn[i*64+k] * wOut[k*16+j]
			}
			prod[i*16+j] = float64(s)
		}
	}
	strict, sp32, _ := Pinv(prod, 16, 16, 0)
	loose, sp64, _ := Pinv(prod, 16, 16, 16*2.220446049250313e-16)
	if sp32.Rank != 15 || sp64.Rank != 16 || testutil.MaxAbs(loose) < 100*testutil.MaxAbs(strict) {
		t.Errorf("float32 product: rank %d (torch rule) and %d (float64 eps); max |pinv| %g and %g",
			sp32.Rank, sp64.Rank, testutil.MaxAbs(strict), testutil.MaxAbs(loose))
	}
}

// A hand-made rank-2 matrix: rows 2 and 5 are multiples of row 1, row 4 is
// row 1 plus row 3.
func TestPinvRankDeficient(t *testing.T) {
	g := testutil.Golden(t, goldenPinv)
	a := make([]float64, 20)
	for i, v := range g["rank2.A"] {
		a[i] = float64(v)
	}
	p, sp, err := Pinv(a, 5, 4, 5*Float32Eps)
	if err != nil {
		t.Fatal(err)
	}
	_, rank2 := goldenRanks(t)
	if sp.Rank != 2 || rank2 != 2 {
		t.Fatalf("rank %d, torch %d, want 2", sp.Rank, rank2)
	}
	got := dtype.Float32s(p)
	testutil.Close(t, "pinv", got, g["rank2.pinv"], 1e-7, 1e-6)
	// Penrose: A·A⁺·A = A, computed from our pinv alone.
	for i := 0; i < 5; i++ {
		for j := 0; j < 4; j++ {
			var s float64
			for k := 0; k < 5; k++ { // (A·A⁺)[i,k] · A[k,j]
				var aap float64
				for l := 0; l < 4; l++ {
					aap += a[i*4+l] * p[l*5+k]
				}
				s += aap * a[k*4+j]
			}
			if d := s - a[i*4+j]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("(A A⁺ A)[%d,%d] = %g, want %g", i, j, s, a[i*4+j])
			}
		}
	}
}
