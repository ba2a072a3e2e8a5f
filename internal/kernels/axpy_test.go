package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// axpyRef is y + a·x with the product and the sum each rounded to float32
// (the explicit conversion keeps the compiler from fusing them): what
// Axpy computes on every path, bit for bit.
func axpyRef(y []float32, a float32, x []float32) []float32 {
	out := make([]float32, len(y))
	for i := range y {
		out[i] = y[i] + float32(a*x[i])
	}
	return out
}

// axpySame fails t unless got equals want bit for bit, or both are NaN.
func axpySame(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s[%d] = %.9g, want %.9g", what, i, got[i], want[i])
		}
	}
}

// Axpy equals the float32 reference bit for bit, over lengths that
// exercise the 16-lane loop, the 8-lane block and the tail, with y
// independent of x and with y ≈ −a·x (a sum that cancels); and it is
// within an ulp or two of the exact a·x + y: |Axpy − exact| ≤ 2.4e-7·(|a·x|
// + |y|), the error bound of a rounded product and a rounded sum.
func TestAxpyMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 20))
	asmPaths(t, &useAxpyAsm, func(t *testing.T) {
		for _, n := range []int{16, 768, 768 + 8 + 7, 4099} {
			for trial := 0; trial < 20; trial++ {
				a := float32(r.NormFloat64())
				x, y := randSlice(r, n, 1), randSlice(r, n, 2)
				if trial%2 == 1 {
					for i := range y {
						y[i] = -a*x[i] + float32(1e-3*r.NormFloat64())
					}
				}
				got := slices.Clone(y)
				Axpy(got, a, x)
				axpySame(t, "Axpy", got, axpyRef(y, a, x))
				for i, g := range got {
					exact := float64(a)*float64(x[i]) + float64(y[i])
					tol := 2.4e-7 * (math.Abs(float64(a)*float64(x[i])) + math.Abs(float64(y[i])))
					if !(math.Abs(float64(g)-exact) <= tol) {
						t.Fatalf("Axpy[%d] = %.9g, exact %.17g (a = %g, x = %g, y = %g)", i, g, exact, a, x[i], y[i])
					}
				}
			}
		}
	})
	if !hasAVX2FMA {
		return
	}
	// The kernel and gonum's Saxpy agree bit for bit, called directly.
	a := float32(0.37)
	x, y := randSlice(r, 1000, 1), randSlice(r, 1000, 1)
	asm, gonum := slices.Clone(y), slices.Clone(y)
	axpyAsm(asm, a, x)
	axpyGo(gonum, a, x)
	axpySame(t, "asm vs Saxpy", asm, gonum)
}

// Every length 0..40 (no block, the 8-lane block, 16-lane iterations, and
// tails of 1..7) at every offset 0..7 elements of y into its buffer, with x
// at another offset, and in place (x the same slice as y): the results
// match the reference and nothing outside y is written.
func TestAxpyLengthsOffsetsAliasing(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	const sentinel = float32(-12345)
	asmPaths(t, &useAxpyAsm, func(t *testing.T) {
		for n := 0; n <= 40; n++ {
			for off := 0; off < 8; off++ {
				a := float32(r.NormFloat64())
				xoff := (off + 5) % 8
				x := randSlice(r, xoff+n+8, 1)[xoff : xoff+n]
				y0 := randSlice(r, n, 1)

				buf := make32(off+n+8, sentinel)
				y := buf[off : off+n]
				copy(y, y0)
				Axpy(y, a, x)
				axpySame(t, "Axpy", y, axpyRef(y0, a, x))
				checkSentinels(t, buf, off, n, sentinel)

				copy(buf, make32(len(buf), sentinel))
				copy(y, y0)
				Axpy(y, a, y)
				axpySame(t, "Axpy in place", y, axpyRef(y0, a, y0))
				checkSentinels(t, buf, off, n, sentinel)
				if t.Failed() {
					t.Fatalf("n = %d, offset %d", n, off)
				}
			}
		}
	})
}

// NaN and ±Inf in x, y or a, in a 16-lane iteration (lanes 0 and 13), the
// 8-lane block (18) and the tail (25): NaN gives NaN, Inf + finite gives
// Inf, Inf − Inf and Inf·0 give NaN, overflow gives Inf, the neighbours
// are untouched; and a == 0 leaves y alone, Inf and NaN in x included, as
// BLAS does.
func TestAxpySpecialValues(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	r := rand.New(rand.NewPCG(22, 22))
	const n = 27
	x0, y0 := randSlice(r, n, 1), randSlice(r, n, 1)
	asmPaths(t, &useAxpyAsm, func(t *testing.T) {
		for _, c := range []struct {
			a, x, y float32
			want    float32 // NaN for NaN
		}{
			{2, nan, 1, nan},
			{2, 1, nan, nan},
			{nan, 1, 1, nan},
			{2, inf, 1, inf},
			{-2, inf, 1, -inf},
			{2, 1, -inf, -inf},
			{2, inf, -inf, nan},
			{inf, 1, 1, inf},
			{inf, 0, 1, nan},
			{0, inf, 3, 3},
			{0, nan, 3, 3},
			{0, 1, negZero, negZero},
			{math.MaxFloat32, 2, 0, inf},
		} {
			for _, pos := range []int{0, 13, 18, 25} {
				x, y := slices.Clone(x0), slices.Clone(y0)
				x[pos], y[pos] = c.x, c.y
				Axpy(y, c.a, x)
				got := y[pos]
				if c.want != c.want {
					if got == got {
						t.Errorf("Axpy(a=%g, x=%g, y=%g) at %d = %g, want NaN", c.a, c.x, c.y, pos, got)
					}
				} else if got != c.want || math.Signbit(float64(got)) != math.Signbit(float64(c.want)) {
					t.Errorf("Axpy(a=%g, x=%g, y=%g) at %d = %g, want %g", c.a, c.x, c.y, pos, got, c.want)
				}
				// The neighbours are y + a·x as usual (or y for a == 0).
				want := axpyRef(y0, c.a, x0)
				if c.a == 0 {
					want = slices.Clone(y0)
				}
				y[pos], want[pos] = 0, 0
				axpySame(t, "neighbours", y, want)
			}
		}
	})
}

func TestAxpyLengthMismatch(t *testing.T) {
	asmPaths(t, &useAxpyAsm, func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("Axpy with len(x) != len(y): no panic")
			}
		}()
		Axpy(make([]float32, 16), 1, make([]float32, 17))
	})
}
