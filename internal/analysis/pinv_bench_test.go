package analysis

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// pinvBaselineLoops is PinvBaseline as it was before its products went
// through blas64: scalar float64 loops for W_in @ W_out, the
// pseudo-inverse's V diag(1/σ) Uᵀ and W_dec @ pinv. It is the reference
// of TestPinvBaselineMatchesLoops and the same-run baseline of
// BenchmarkPinvBaseline.
func pinvBaselineLoops(wDec, wIn, wOut []float32, f, c, n int) []float32 {
	prod := make([]float64, c*c)
	for i := 0; i < c; i++ {
		for k := 0; k < n; k++ {
			a := float64(wIn[i*n+k])
			for j, b := range wOut[k*c : (k+1)*c] {
				prod[i*c+j] += a * float64(b)
			}
		}
	}
	var svd mat.SVD
	svd.Factorize(mat.NewDense(c, c, prod), mat.SVDThin)
	sigma := svd.Values(nil)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	cutoff := float64(c) * Float32Eps * sigma[0]
	p := make([]float64, c*c)
	for k, s := range sigma {
		if s <= cutoff || s == 0 {
			continue
		}
		for i := 0; i < c; i++ {
			vi := v.At(i, k) / s
			for j := 0; j < c; j++ {
				p[i*c+j] += vi * u.At(j, k)
			}
		}
	}
	out := make([]float32, f*c)
	acc := make([]float64, c)
	for r := 0; r < f; r++ {
		clear(acc)
		for k, d := range wDec[r*c : (r+1)*c] {
			for j, v := range p[k*c : (k+1)*c] {
				acc[j] += float64(d) * v
			}
		}
		for j, v := range acc {
			out[r*c+j] = float32(v)
		}
	}
	return out
}

// randomMLP returns W_dec (f, c), W_in (c, n) and W_out (n, c) with
// W_out's columns centred, as TransformerLens's processing leaves them, so
// that W_in @ W_out has the all-ones null direction the cut-off must drop.
func randomMLP(r *rand.Rand, f, c, n int) (wDec, wIn, wOut []float32) {
	fill := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.05)
		}
		return v
	}
	wDec, wIn, wOut = fill(f*c), fill(c*n), fill(n*c)
	for k := 0; k < n; k++ {
		row := wOut[k*c : (k+1)*c]
		var mean float32
		for _, v := range row {
			mean += v
		}
		mean /= float32(c)
		for j := range row {
			row[j] -= mean
		}
	}
	return wDec, wIn, wOut
}

// The BLAS path computes what the scalar loops computed, to float64
// rounding of the sums (seen through float32 output: 1e-6 relative of the
// largest value), on shapes that cut W_dec into several parts.
func TestPinvBaselineMatchesLoops(t *testing.T) {
	f, c, n := 1100, 48, 192
	wDec, wIn, wOut := randomMLP(rand.New(rand.NewPCG(8, 8)), f, c, n)
	got, sp, err := PinvBaseline(wDec, wIn, wOut, f, c, n)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Rank != c-1 {
		t.Errorf("rank %d, want %d (the centring's null direction dropped)", sp.Rank, c-1)
	}
	want := pinvBaselineLoops(wDec, wIn, wOut, f, c, n)
	testutil.Close(t, "W_mid", got, want, 1e-6*testutil.MaxAbs(want), 0)
}

// BenchmarkPinvBaseline measures the pinv baseline at GPT-2-small shapes
// (F = 24,576, C = 768, N = 3,072) through the build's BLAS ("blas") and
// with the scalar loops it replaced ("loops"), in the same run.
func BenchmarkPinvBaseline(b *testing.B) {
	info := blasimpl.Use(0)
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	f, c, n := 24576, 768, 3072
	wDec, wIn, wOut := randomMLP(rand.New(rand.NewPCG(9, 9)), f, c, n)
	for _, impl := range []string{"blas", "loops"} {
		b.Run(impl, func(b *testing.B) {
			for b.Loop() {
				if impl == "blas" {
					if _, _, err := PinvBaseline(wDec, wIn, wOut, f, c, n); err != nil {
						b.Fatal(err)
					}
				} else {
					pinvBaselineLoops(wDec, wIn, wOut, f, c, n)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op")
		})
	}
}
