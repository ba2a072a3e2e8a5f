package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

// torch.optim.AdamW's default betas and eps.
const beta1, beta2, eps = 0.9, 0.999, 1e-8

// adamwState is parameters, moments and gradients of n elements as a
// training run has them: θ ~ N(0, 0.05²), m ~ N(0, σ²) and v ~ σ²·χ²
// with σ between 1e-8 and 1 (so that sqrt(v)/bc2sqrt spans eps), g ~
// N(0, σ²) with a tenth of it exactly zero, and a few v of exactly 0.
func adamwState(r *rand.Rand, n int) (theta, m, v, g []float32) {
	theta, m, v, g = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range theta {
		s := math.Pow(10, -8*r.Float64())
		theta[i] = float32(0.05 * r.NormFloat64())
		m[i] = float32(s * r.NormFloat64())
		z := r.NormFloat64()
		v[i] = float32(s * s * z * z)
		g[i] = float32(s * r.NormFloat64())
		switch r.IntN(20) {
		case 0, 1:
			g[i] = 0
		case 2:
			v[i], m[i] = 0, 0
		}
	}
	return
}

// adamwGo applies k through updateGo to copies of the state.
func adamwGo(k AdamWStep, theta, m, v, g []float32) (th, mm, vv []float32) {
	th, mm, vv = slices.Clone(theta), slices.Clone(m), slices.Clone(v)
	k.updateGo(th, mm, vv, g)
	return
}

// adamwSame fails t unless got equals want bit for bit (or both are NaN,
// whose payloads may differ). It reports a difference within the kernels'
// tolerance (2e-7 relative, 1e-30 absolute) apart from a larger one, which
// stops the test.
func adamwSame(t *testing.T, what string, got, want []float32) {
	t.Helper()
	near, first := 0, -1
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		switch {
		case math.Float32bits(got[i]) == math.Float32bits(want[i]), g != g && w != w:
		case math.Abs(g-w) <= 1e-30+2e-7*math.Abs(w):
			near++
			if first < 0 {
				first = i
			}
		default:
			t.Fatalf("%s[%d] = %.9g, want %.9g", what, i, got[i], want[i])
		}
	}
	if near > 0 {
		t.Errorf("%s: %d of %d differ from updateGo in the last bits, first [%d] = %.9g, want %.9g",
			what, near, len(got), first, got[first], want[first])
	}
}

// The assembly kernel equals updateGo bit for bit (both perform the same
// float32 operations in the same order, none fused), with and without a
// gradient, over learning rates and steps that span torch's bias
// corrections.
func TestAdamWAsmMatchesGo(t *testing.T) {
	if !hasAVX2FMA {
		t.Skip("no assembly kernel on this CPU/architecture")
	}
	saved := useAdamWAsm
	t.Cleanup(func() { useAdamWAsm = saved })
	useAdamWAsm = true
	r := rand.New(rand.NewPCG(10, 10))
	for _, c := range []struct {
		lr, wd float64
		t      int
	}{{1e-3, 0, 1}, {1e-3, 0.01, 2}, {3e-4, 0.1, 10}, {1e-2, 0.01, 1000}, {1e-4, 1e-5, 123456}} {
		k := TorchAdamWStep(c.lr, c.wd, beta1, beta2, eps, c.t)
		theta, m, v, g := adamwState(r, 3*4096+13)
		for _, grad := range [][]float32{g, nil} {
			wt, wm, wv := adamwGo(k, theta, m, v, grad)
			th, mm, vv := slices.Clone(theta), slices.Clone(m), slices.Clone(v)
			k.Update(th, mm, vv, grad)
			adamwSame(t, "theta", th, wt)
			adamwSame(t, "m", mm, wm)
			adamwSame(t, "v", vv, wv)
			if t.Failed() {
				t.Fatalf("lr %g, wd %g, t %d, nil g %v", c.lr, c.wd, c.t, grad == nil)
			}
		}
	}
}

// Every length 0..40 (no block, blocks only, blocks and a tail of 1..7)
// at every offset 0..7 elements into its buffers (independent offsets for
// the four slices), with and without a gradient: the results match updateGo and
// nothing outside the slices is written.
func TestAdamWLengthsOffsets(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	k := TorchAdamWStep(1e-3, 0.01, beta1, beta2, eps, 7)
	const sentinel = float32(-12345)
	asmPaths(t, &useAdamWAsm, func(t *testing.T) {
		for n := 0; n <= 40; n++ {
			for off := 0; off < 8; off++ {
				for _, nilG := range []bool{false, true} {
					theta, m, v, g := adamwState(r, n)
					if nilG {
						g = nil
					}
					wt, wm, wv := adamwGo(k, theta, m, v, g)
					offs := [4]int{off, (off + 3) % 8, (off + 5) % 8, 7 - off}
					var bufs [4][]float32
					var s [4][]float32
					for j, src := range [][]float32{theta, m, v, g} {
						bufs[j] = make32(offs[j]+n+8, sentinel)
						s[j] = bufs[j][offs[j] : offs[j]+n]
						copy(s[j], src)
					}
					if nilG {
						s[3] = nil
					}
					k.Update(s[0], s[1], s[2], s[3])
					adamwSame(t, "theta", s[0], wt)
					adamwSame(t, "m", s[1], wm)
					adamwSame(t, "v", s[2], wv)
					for j := range bufs {
						checkSentinels(t, bufs[j], offs[j], n, sentinel)
					}
					if !nilG {
						testutil.Close(t, "g (read only)", s[3], g, 0, 0)
					}
					if t.Failed() {
						t.Fatalf("n = %d, offset %d, nil g %v", n, off, nilG)
					}
				}
			}
		}
	})
}

// NaN and ±Inf in θ, m, v or g, in an 8-lane block (lanes 0 and 5) and in
// the scalar tail, propagate as in updateGo (NaN where updateGo gives NaN,
// the same infinity where it gives one), and leave their neighbours alone.
func TestAdamWSpecialValues(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	k := TorchAdamWStep(1e-3, 0.01, beta1, beta2, eps, 3)
	r := rand.New(rand.NewPCG(12, 12))
	base, bm, bv, bg := adamwState(r, 21)
	asmPaths(t, &useAdamWAsm, func(t *testing.T) {
		for which := 0; which < 4; which++ {
			for _, x := range []float32{nan, inf, -inf, math.MaxFloat32} {
				for _, pos := range []int{0, 5, 16, 20} {
					theta, m, v, g := slices.Clone(base), slices.Clone(bm), slices.Clone(bv), slices.Clone(bg)
					[][]float32{theta, m, v, g}[which][pos] = x
					wt, wm, wv := adamwGo(k, theta, m, v, g)
					k.Update(theta, m, v, g)
					adamwSame(t, "theta", theta, wt)
					adamwSame(t, "m", m, wm)
					adamwSame(t, "v", v, wv)
					if t.Failed() {
						t.Fatalf("%g in slice %d at %d", x, which, pos)
					}
				}
			}
		}
		// Spot checks of the propagation itself: an infinite gradient
		// makes m and v infinite and θ NaN (∞/∞); a NaN moment makes θ NaN.
		theta, m, v, g := slices.Clone(base), slices.Clone(bm), slices.Clone(bv), slices.Clone(bg)
		g[5], m[16] = inf, nan
		k.Update(theta, m, v, g)
		if !math.IsInf(float64(m[5]), 1) || !math.IsInf(float64(v[5]), 1) || theta[5] == theta[5] {
			t.Errorf("g = +Inf: θ, m, v = %g, %g, %g; want NaN, +Inf, +Inf", theta[5], m[5], v[5])
		}
		if theta[16] == theta[16] || m[16] == m[16] {
			t.Errorf("m = NaN: θ, m = %g, %g; want NaN, NaN", theta[16], m[16])
		}
	})
}

// From zero moments the first step (t = 1, where the bias corrections undo
// the (1−β) factors) moves every parameter by lr·g/(|g| + eps) after the
// decay: the textbook sign step, checked in float64.
func TestAdamWFirstStep(t *testing.T) {
	const lr, wd = 1e-3, 0.01
	k := TorchAdamWStep(lr, wd, beta1, beta2, eps, 1)
	r := rand.New(rand.NewPCG(13, 13))
	theta, _, _, g := adamwState(r, 37)
	want := make([]float32, len(theta))
	for i := range want {
		gi := float64(g[i])
		want[i] = float32(float64(theta[i])*(1-lr*wd) - lr*gi/(math.Abs(gi)+1e-8))
	}
	asmPaths(t, &useAdamWAsm, func(t *testing.T) {
		th, m, v := slices.Clone(theta), make([]float32, len(theta)), make([]float32, len(theta))
		k.Update(th, m, v, g)
		testutil.Close(t, "θ after step 1", th, want, 1e-9, 1e-6)
	})
}

// The gradient may be the same slice as the first moment (each element's
// inputs are read before its outputs are written, in both paths), and
// mismatched lengths panic.
func TestAdamWAliasingAndLengths(t *testing.T) {
	k := TorchAdamWStep(1e-3, 0.01, beta1, beta2, eps, 5)
	r := rand.New(rand.NewPCG(14, 14))
	theta, m, v, _ := adamwState(r, 29)
	wt, wm, wv := adamwGo(k, theta, m, v, m)
	asmPaths(t, &useAdamWAsm, func(t *testing.T) {
		th, mm, vv := slices.Clone(theta), slices.Clone(m), slices.Clone(v)
		k.Update(th, mm, vv, mm)
		adamwSame(t, "theta", th, wt)
		adamwSame(t, "m", mm, wm)
		adamwSame(t, "v", vv, wv)
		for _, c := range [][4]int{{8, 7, 8, 8}, {8, 8, 9, 8}, {8, 8, 8, 16}} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("lengths %v: no panic", c)
					}
				}()
				k.Update(make([]float32, c[0]), make([]float32, c[1]), make([]float32, c[2]), make([]float32, c[3]))
			}()
		}
	})
}
