package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

func randSlice(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = scale * float32(r.NormFloat64())
	}
	return s
}

// asmPaths runs f once per implementation of a kernel this machine has: as
// subtest "asm" with the assembly kernel (where hasAVX2FMA) and as "go"
// with the pure-Go path, chosen through *use (useGeluAsm, useAxpyAsm or
// useAdamWAsm) and restored afterwards.
func asmPaths(t *testing.T, use *bool, f func(t *testing.T)) {
	t.Helper()
	saved := *use
	t.Cleanup(func() { *use = saved })
	for _, asm := range []bool{true, false} {
		name := "go"
		if asm {
			name = "asm"
			if !hasAVX2FMA {
				t.Logf("no assembly kernel on this CPU/architecture; testing the Go path only")
				continue
			}
		}
		*use = asm
		t.Run(name, f)
	}
}

// The BLAS path equals the float64 triple loop to float32 rounding of a
// length-K dot product (K·ε relative to the sum of |terms|, bounded here).
func TestMatMulMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	// Sizes cover the unsplit path, the row split (m ≥ 2·partMin, m ≥ n)
	// and the column split (n ≥ 2·partMin, n > m) of MatMul, whatever the
	// core count: the cut follows the shape alone.
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 64, 33}, {64, 130, 5}, {257, 19, 7}, {600, 19, 7}, {130, 9, 2111}} {
		m, k, n := sz[0], sz[1], sz[2]
		a, b := randSlice(r, m*k, 1), randSlice(r, k*n, 1)
		for _, acc := range []bool{false, true} {
			dst := randSlice(r, m*n, 1)
			name := fmt.Sprintf("%dx%dx%d", m, k, n)
			if acc {
				name += "_accumulate"
			}
			t.Run(name, func(t *testing.T) {
				got, want := slices.Clone(dst), slices.Clone(dst)
				MatMul(got, a, b, m, k, n, acc)
				MatMulNaive(want, a, b, m, k, n, acc)
				testutil.Close(t, "MatMul", got, want, 1e-5*float64(k), 1e-5)
			})
		}
	}
}

func TestLinearAddsBias(t *testing.T) {
	a := []float32{1, 2, 3, 4}       // (2, 2)
	w := []float32{1, 0, 1, 0, 1, 1} // (2, 3)
	bias := []float32{10, 20, 30}    // (3)
	got := make([]float32, 6)
	Linear(got, a, w, bias, 2, 2, 3)
	want := []float32{11, 22, 33, 13, 24, 37} // by hand
	testutil.Close(t, "Linear", got, want, 0, 0)
}

func TestLayerNormPre(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	m, c := 9, 48
	src := randSlice(r, m*c, 3)
	for i := range src {
		src[i] += 5 // a large mean, as residual streams have
	}
	got, want := make([]float32, m*c), make([]float32, m*c)
	LayerNormPre(got, src, m, c, LayerNormEps)
	LayerNormPreNaive(want, src, m, c, LayerNormEps)
	testutil.Close(t, "LayerNormPre", got, want, 1e-6, 1e-6)
	// Invariant: each row has mean 0 and variance 1 − eps/(var+eps) ≈ 1.
	for i := 0; i < m; i++ {
		var s, ss float64
		for _, v := range got[i*c : (i+1)*c] {
			s += float64(v)
			ss += float64(v) * float64(v)
		}
		if math.Abs(s/float64(c)) > 1e-6 || math.Abs(ss/float64(c)-1) > 1e-5 {
			t.Errorf("row %d: mean %g, mean square %g", i, s/float64(c), ss/float64(c))
		}
	}
	// Hand-checked: [1, 3] → mean 2, var 1 → [−1, 1]/sqrt(1+1e-5).
	two := []float32{1, 3}
	LayerNormPre(two, two, 1, 2, LayerNormEps)
	w := float32(1 / math.Sqrt(1+1e-5))
	testutil.Close(t, "LayerNormPre([1 3])", two, []float32{-w, w}, 0, 1e-7)
}

func TestExpf(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 200000; i++ {
		x := float32(r.Float64()*190 - 100)
		got, want := float64(expf(x)), math.Exp(float64(x))
		if want < 1.2e-38 { // float32 subnormal range: absolute error of one subnormal ulp
			if math.Abs(got-want) > 1.5e-45 {
				t.Fatalf("expf(%g) = %g, want %g", x, got, want)
			}
			continue
		}
		if math.IsInf(want, 1) || want > math.MaxFloat32 {
			continue
		}
		if math.Abs(got-want) > 2e-7*want {
			t.Fatalf("expf(%g) = %g, want %g (rel %g)", x, got, want, math.Abs(got-want)/want)
		}
	}
	if !math.IsInf(float64(expf(89)), 1) || expf(-104) != 0 || expf(0) != 1 {
		t.Errorf("expf edge cases: %g %g %g", expf(89), expf(-104), expf(0))
	}
}

func TestExpf32(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 200000; i++ {
		x := float32(r.Float64()*175 - 87)
		got, want := float64(expf32(x)), math.Exp(float64(x))
		if math.Abs(got-want) > 3e-7*want {
			t.Fatalf("expf32(%g) = %g, want %g (rel %g)", x, got, want, math.Abs(got-want)/want)
		}
	}
}

func TestGeluNew(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	src := randSlice(r, 5000, 4)
	src = append(src, 0, -0.0, 1e-30, -1e-30, 20, -20, 100, -100, 1e10, -1e10)
	got, want := make([]float32, len(src)), make([]float32, len(src))
	GeluNew(got, src)
	GeluNewNaive(want, src)
	// float32 evaluation of the tanh argument and of the exponential (see
	// GeluNew): 1e-6 relative where |gelu| matters. In the negative tail
	// (x < −5, |gelu| < 3e-7) the argument's float32 rounding is amplified
	// by |2u| in relative terms, so 1e-9 absolute covers it; PyTorch's own
	// float32 1 + tanh(u) cancels to exactly 0 there.
	testutil.Close(t, "GeluNew", got, want, 1e-9, 1e-6)
	// Hand-checked value: gelu_new(1) = 0.5·(1 + tanh(0.7978846·1.044715)) = 0.841192.
	one := []float32{1}
	GeluNew(one, one)
	testutil.Close(t, "GeluNew(1)", one, []float32{0.8411920}, 1e-6, 0)
}

// GeluNewBackward matches a central difference of the gelu_new formula in
// float64, times dh.
func TestGeluNewBackward(t *testing.T) {
	gelu := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(geluSqrt2OverPi*(x+geluCubic*x*x*x)))
	}
	r := rand.New(rand.NewPCG(15, 15))
	pre := append(randSlice(r, 5000, 4), 0, 1, -1, 20, -20)
	dh, want := randSlice(r, len(pre), 1), make([]float32, len(pre))
	for i, v := range pre {
		x, h := float64(v), 1e-5
		want[i] = float32(float64(dh[i]) * (gelu(x+h) - gelu(x-h)) / (2 * h))
	}
	GeluNewBackward(dh, pre)
	testutil.Close(t, "GeluNewBackward", dh, want, 1e-7, 1e-6)
}

func TestCausalAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	// T = 150 spans three causal row blocks, the last one partial.
	for _, sz := range [][4]int{{1, 1, 1, 1}, {2, 7, 3, 4}, {3, 16, 2, 8}, {1, 150, 2, 8}} {
		b, tt, h, d := sz[0], sz[1], sz[2], sz[3]
		qkv := randSlice(r, b*tt*3*h*d, 2)
		want := make([]float32, b*tt*h*d)
		CausalAttentionNaive(want, qkv, b, tt, h, d)
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("B%d_T%d_H%d_D%d_workers%d", b, tt, h, d, workers), func(t *testing.T) {
				got := make([]float32, b*tt*h*d)
				CausalAttention(got, qkv, make([]float32, workers*ScratchSize(tt)), b, tt, h, d)
				testutil.Close(t, "CausalAttention", got, want, 2e-6, 2e-5)
			})
		}
	}
	// Position 0 attends only to itself: z[0] = v[0].
	qkv := []float32{1, 2, 3, 4, 5, 6} // B=T=H=1, D=2: q=(1,2) k=(3,4) v=(5,6)
	z := make([]float32, 2)
	CausalAttention(z, qkv, make([]float32, 1), 1, 1, 1, 2)
	testutil.Close(t, "CausalAttention T=1", z, []float32{5, 6}, 0, 0)
}

// CrossEntropyRows equals the float64 reference on both paths: rows of
// 1,000 and 1,003 logits (a tail past the kernel's blocks of 8), a row
// whose logits span far below the clamp at −87, rows with −Inf entries,
// and rows whose maximum is +Inf or NaN (NaN, as the reference).
func TestCrossEntropyRows(t *testing.T) {
	asmPaths(t, &useExpSumAsm, func(t *testing.T) {
		r := rand.New(rand.NewPCG(6, 6))
		for _, v := range []int{1000, 1003} {
			m := 5
			logits := randSlice(r, m*v, 5)
			for i := range v { // row 1 spans [−2000, 0]: most terms underflow
				logits[v+i] = -2 * float32(i)
			}
			logits[2*v+17], logits[3*v] = float32(math.Inf(-1)), float32(math.Inf(-1))
			target := []int32{0, 999, 3, 500, 7}
			got, want := make([]float32, m), make([]float32, m)
			CrossEntropyRows(got, logits, target, m, v)
			CrossEntropyRowsNaive(want, logits, target, m, v)
			testutil.Close(t, fmt.Sprintf("CrossEntropyRows V=%d", v), got, want, 1e-5, 1e-6)
		}
		// Uniform logits: loss = log V exactly.
		got := make([]float32, 2)
		uni := make([]float32, 16)
		CrossEntropyRows(got[:1], uni, []int32{2}, 1, 16)
		testutil.Close(t, "CE(uniform)", got[:1], []float32{float32(math.Log(16))}, 0, 1e-7)
		special := make([]float32, 32)
		special[5] = float32(math.Inf(1))
		special[16+9] = float32(math.NaN())
		CrossEntropyRows(got, special, []int32{0, 0}, 2, 16)
		if !math.IsNaN(float64(got[0])) || !math.IsNaN(float64(got[1])) {
			t.Errorf("rows with a +Inf or NaN logit: %v, want NaN (as the reference)", got)
		}
	})
}

// MatMul's bits do not depend on GOMAXPROCS: its cut into parts follows
// the shape alone. The shapes are cut by rows and by columns; under
// OpenBLAS's Haswell kernel (make test runs this package under it too),
// a cut that followed the thread count changes some elements' rounding.
func TestMatMulBitsIndependentOfThreads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	r := rand.New(rand.NewPCG(5, 5))
	for _, sz := range [][3]int{{1000, 48, 200}, {150, 48, 2300}, {4096, 32, 96}} {
		m, k, n := sz[0], sz[1], sz[2]
		t.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(t *testing.T) {
			a, b := randSlice(r, m*k, 1), randSlice(r, k*n, 1)
			runtime.GOMAXPROCS(1)
			want := make([]float32, m*n)
			MatMul(want, a, b, m, k, n, false)
			for _, procs := range []int{2, 3, 5, 8} {
				runtime.GOMAXPROCS(procs)
				got := make([]float32, m*n)
				MatMul(got, a, b, m, k, n, false)
				if i := firstDiff(got, want); i >= 0 {
					t.Errorf("GOMAXPROCS=%d: element (%d, %d) = %g, with one thread %g", procs, i/n, i%n, got[i], want[i])
				}
			}
		})
	}
}

// firstDiff returns the first index where a and b differ in bits, or -1.
func firstDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
