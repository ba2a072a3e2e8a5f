package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

// geluTestData is N(0, 4²) activations, a uniform sweep through the
// region where the exponential over- and underflows (|x| ≲ 11), and
// magnitudes from 1e-30 to 1e30 of both signs.
func geluTestData(r *rand.Rand, n int) []float32 {
	s := randSlice(r, n, 4)
	for i := 0; i < n/3; i++ {
		s[i] = float32(r.Float64()*24 - 12)
	}
	for i := n / 3; i < n/2; i++ {
		s[i] = float32(math.Pow(10, r.Float64()*60-30))
		if r.IntN(2) == 0 {
			s[i] = -s[i]
		}
	}
	r.Shuffle(n, func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// The assembly kernel and geluGo each stay within GeluNew's documented
// tolerance of the float64 reference (1e-6 relative, 1e-9 absolute; see
// TestGeluNew). That alone would let them differ by 2e-9 absolute, which
// says nothing in the negative tail (x < −5, |gelu_new(x)| < 3e-7): a
// result off by a factor of ten there passes it. checkGeluAsmVsGo asserts
// what they share instead, and fails on its own where the comparisons
// with the reference cannot.
func TestGeluNewAsmMatchesGo(t *testing.T) {
	if !hasAVX2FMA {
		t.Skip("no assembly kernel on this CPU/architecture")
	}
	saved := useGeluAsm
	t.Cleanup(func() { useGeluAsm = saved })
	src := geluTestData(rand.New(rand.NewPCG(8, 8)), 3*4096+13)
	want := make([]float32, len(src))
	GeluNewNaive(want, src)
	asm, gogo := make([]float32, len(src)), make([]float32, len(src))
	useGeluAsm = true
	GeluNew(asm, src)
	useGeluAsm = false
	GeluNew(gogo, src)
	testutil.Close(t, "asm vs naive", asm, want, 1e-9, 1e-6)
	testutil.Close(t, "go vs naive", gogo, want, 1e-9, 1e-6)
	same := checkGeluAsmVsGo(t, src, asm, gogo)
	t.Logf("asm and go agree bit for bit on %d of %d", same, len(asm))
}

// checkGeluAsmVsGo fails t unless asm and gogo, GeluNew of src through the
// assembly kernel and through geluGo, agree as both computing the same
// float32 algorithm must (z = −2u, e^z by expf32's reduction and
// polynomial, x/(1 + e^z)), and returns how many agree bit for bit. The
// two differ only in rounding: the kernel fuses multiply-adds and forms
// x + 0.044715·x³ as fma(0.044715·(x·x), x, x). So, relative to the
// result, with ε = 2⁻²³ and w = e^z/(1 + e^z):
//
//	|asm − go| ≤ (4 + 5·|z|·w)·ε·|go| + 1e-37
//
// Seven roundings of x + 0.044715·x³ between them and one more each for
// z put the two z at most 4.5·ε apart, relatively, which e^z turns into a
// relative difference of up to 4.5·|z|·ε, reaching the result with weight
// w; 4·ε covers the exponential's evaluation, 1 + e^z and the division;
// 1e-37 covers results below float32's normal range and z in (88, 88.38),
// where geluGo returns −0 and the kernel x/e^z (see gelu_amd64.s). In the negative tail this is a relative bound on a tiny
// result, where the reference comparisons only bound it by 1e-9; for x > 0
// it is at most 5.4·ε (6.5e-7) relative, against the 2e-6 they imply; it
// is looser than theirs only for −3.53 < x < −1.56, where theirs holds.
// And for z ≤ −17 (x ≳ 5.01), e^z < 2⁻²⁴, so 1 + e^z rounds to 1 and both
// return x itself. NaN and −Inf give NaN on both, +Inf gives +Inf. All of
// this held for every one of the 2³² float32 inputs when it was written.
func checkGeluAsmVsGo(t testing.TB, src, asm, gogo []float32) (same int) {
	t.Helper()
	const eps = 0x1p-23
	for i, x := range src {
		a, g := asm[i], gogo[i]
		xd := float64(x)
		if x != x || math.IsInf(xd, 0) {
			if math.Float32bits(a) == math.Float32bits(g) {
				same++
			} else if !(a != a && g != g) { // NaN payloads may differ
				t.Fatalf("GeluNew(%g): asm %g, go %g", x, a, g)
			}
			continue
		}
		z := -2 * geluSqrt2OverPi * (xd + geluCubic*xd*xd*xd)
		if z <= -17 && (math.Float32bits(a) != math.Float32bits(x) || math.Float32bits(g) != math.Float32bits(x)) {
			t.Fatalf("GeluNew(%g): asm %g, go %g; want x itself from both (e^z < 2⁻²⁴)", x, a, g)
		}
		if math.Float32bits(a) == math.Float32bits(g) {
			same++
			continue
		}
		w := 1 / (1 + math.Exp(-z))
		tol := (4+5*math.Abs(z)*w)*eps*math.Abs(float64(g)) + 1e-37
		if d := math.Abs(float64(a) - float64(g)); !(d <= tol) {
			t.Fatalf("GeluNew(%.9g) (z = %.6g): asm %.9g, go %.9g differ by %.3g > %.3g", x, z, a, g, d, tol)
		}
	}
	return same
}

// Special values, placed both in an 8-lane block and in the scalar tail:
// NaN → NaN, +Inf → +Inf, −Inf → NaN (the float64 formula's −Inf·0, see
// GeluNew), ±0 → ±0, and huge negative x → −0 rather than x/e^88.
func TestGeluNewSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	cases := []struct {
		x, want float32
		isNaN   bool
	}{
		{x: nan, isNaN: true},
		{x: inf, want: inf},
		{x: -inf, isNaN: true},
		{x: 0, want: 0},
		{x: float32(math.Copysign(0, -1)), want: float32(math.Copysign(0, -1))},
		{x: math.MaxFloat32, want: math.MaxFloat32},
		{x: -math.MaxFloat32, want: float32(math.Copysign(0, -1))},
		{x: -1e37, want: float32(math.Copysign(0, -1))},
		{x: -1e20, want: float32(math.Copysign(0, -1))},
		{x: -20, want: float32(math.Copysign(0, -1))},
		{x: math.SmallestNonzeroFloat32, want: math.SmallestNonzeroFloat32 / 2},
		{x: 1e30, want: 1e30},
	}
	asmPaths(t, &useGeluAsm, func(t *testing.T) {
		for _, c := range cases {
			for _, pos := range []int{0, 5, 8, 9} { // block lanes 0 and 5; tail
				src := make([]float32, 10)
				for i := range src {
					src[i] = 1
				}
				src[pos] = c.x
				dst := make([]float32, len(src))
				GeluNew(dst, src)
				got := dst[pos]
				if c.isNaN {
					if got == got {
						t.Errorf("GeluNew(%g) at %d = %g, want NaN", c.x, pos, got)
					}
				} else if got != c.want || math.Signbit(float64(got)) != math.Signbit(float64(c.want)) {
					t.Errorf("GeluNew(%g) at %d = %g, want %g", c.x, pos, got, c.want)
				}
				// The neighbours are unaffected.
				testutil.Close(t, "GeluNew(1) beside a special value", dst[:pos], make32(pos, 0.8411920), 1e-6, 0)
			}
		}
	})
	// The finite ones agree with the float64 formula.
	for _, c := range cases {
		if c.isNaN || math.IsInf(float64(c.x), 0) {
			continue
		}
		want := []float32{0}
		GeluNewNaive(want, []float32{c.x})
		testutil.Close(t, "special value vs naive", []float32{c.want}, want, 1e-9, 1e-6)
	}
}

func make32(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// Every length 0..40 (no block, blocks only, blocks and a tail of 1..7)
// at every offset 0..7 elements into its buffer (so every misalignment of
// the 32-byte loads and stores occurs, whatever the buffer's alignment),
// into a separate dst and in place: the results match the reference and nothing outside
// dst[:n] is written.
func TestGeluNewLengthsOffsetsAliasing(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const sentinel = float32(-12345)
	asmPaths(t, &useGeluAsm, func(t *testing.T) {
		for n := 0; n <= 40; n++ {
			for off := 0; off < 8; off++ {
				src := geluTestData(r, off+n+8)[off : off+n]
				want := make([]float32, n)
				GeluNewNaive(want, src)

				buf := make32(off+n+8, sentinel)
				dst := buf[off : off+n]
				GeluNew(dst, src)
				testutil.Close(t, "GeluNew", dst, want, 1e-9, 1e-6)
				checkSentinels(t, buf, off, n, sentinel)

				copy(buf, make32(len(buf), sentinel))
				copy(dst, src)
				GeluNew(dst, dst)
				testutil.Close(t, "GeluNew in place", dst, want, 1e-9, 1e-6)
				checkSentinels(t, buf, off, n, sentinel)
				if t.Failed() {
					t.Fatalf("n = %d, offset %d", n, off)
				}
			}
		}
	})
}

func checkSentinels(t *testing.T, buf []float32, off, n int, sentinel float32) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && v != sentinel {
			t.Errorf("buf[%d] = %g written outside dst = buf[%d:%d]", i, v, off, off+n)
		}
	}
}
