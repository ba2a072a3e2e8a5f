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
// TestGeluNew), and so within twice that of each other; they differ at all
// only through FMA rounding and the order of x·x·x.
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
	testutil.Close(t, "asm vs go", asm, gogo, 2e-9, 2e-6)
	same := 0
	for i := range asm {
		if asm[i] == gogo[i] {
			same++
		}
	}
	t.Logf("asm and go agree bit for bit on %d of %d", same, len(asm))
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
