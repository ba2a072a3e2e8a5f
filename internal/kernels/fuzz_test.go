package kernels

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

// Fuzz tests: each fast kernel against its reference on sizes and values
// the fuzzer chooses. `go test` runs the seeds (f.Add) as ordinary tests;
// `go test -run '^$' -fuzz '^FuzzMatMul$' ./internal/kernels` explores.
// Inputs decode leniently: any bytes make a valid case, sizes are taken
// modulo small bounds, and a tensor with more elements than the bytes
// provide is completed from a PCG seeded by a hash of the bytes.

// fuzzBytes hands out the fuzzer's bytes as numbers, then pseudo-random
// numbers once they run out.
type fuzzBytes struct {
	data []byte
	r    *rand.Rand
}

func newFuzzBytes(data []byte) *fuzzBytes {
	h := fnv.New64a()
	h.Write(data)
	return &fuzzBytes{data: data, r: rand.New(rand.NewPCG(h.Sum64(), uint64(len(data))))}
}

func (b *fuzzBytes) uint16() uint16 {
	if len(b.data) >= 2 {
		v := binary.LittleEndian.Uint16(b.data)
		b.data = b.data[2:]
		return v
	}
	return uint16(b.r.Uint32())
}

func (b *fuzzBytes) uint32() uint32 {
	if len(b.data) >= 4 {
		v := binary.LittleEndian.Uint32(b.data)
		b.data = b.data[4:]
		return v
	}
	return b.r.Uint32()
}

// floats returns n finite values int16/2¹⁵·scale, in [−scale, scale) on a
// grid of scale·2⁻¹⁵ (scale a power of two, so the values are exact).
func (b *fuzzBytes) floats(n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(int16(b.uint16())) * (scale / 32768)
	}
	return s
}

// bits returns n float32 of arbitrary bits: NaN, ±Inf, subnormals and all.
func (b *fuzzBytes) bits(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = math.Float32frombits(b.uint32())
	}
	return s
}

// le16 and le32 encode seed values for f.Add.
func le16(v ...float32) []byte {
	out := make([]byte, 0, 2*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint16(out, uint16(int16(x*32768)))
	}
	return out
}

func le32(v ...float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}

// MatMul equals MatMulNaive within TestMatMulMatchesNaive's tolerance,
// 1e-5·K absolute plus 1e-5 relative, on M, N ≤ 32 and K ≤ 64, with and
// without accumulate; split moves the longer side past 2·partMin, so that
// the row and column cuts of MatMul are fuzzed too. Values are in [−1, 1):
// then float32's worst-case error of a length-K dot product (plus the
// accumulated dst), (K+1)²·2⁻²⁴, stays below 1e-5·K for every K ≤ 64, so
// the tolerance holds whatever the BLAS's summation order, and a failure
// is a wrong element, not rounding. M, K or N may be 0.
func FuzzMatMul(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), false, false, le16(0.5, -0.25))
	f.Add(uint8(3), uint8(5), uint8(7), true, false, []byte{})
	f.Add(uint8(17), uint8(64), uint8(32), false, false, []byte("seed"))
	f.Add(uint8(0), uint8(4), uint8(3), true, false, []byte{})
	f.Add(uint8(2), uint8(0), uint8(3), true, false, le16(0.75, 0.75, 0.75, 0.75, 0.75, 0.75))
	f.Add(uint8(2), uint8(0), uint8(3), false, false, le16(0.75, 0.75, 0.75, 0.75, 0.75, 0.75))
	f.Add(uint8(7), uint8(19), uint8(3), false, true, []byte{1, 2, 3})  // row split
	f.Add(uint8(2), uint8(9), uint8(11), true, true, []byte{4, 5, 6})   // column split
	f.Add(uint8(32), uint8(64), uint8(32), true, true, []byte{7, 8, 9}) // row split, accumulate
	f.Fuzz(func(t *testing.T, m8, k8, n8 uint8, acc, split bool, data []byte) {
		m, k, n := int(m8)%33, int(k8)%65, int(n8)%33
		if split {
			if m >= n {
				m += 2 * partMin
			} else {
				n += 2 * partMin
			}
		}
		in := newFuzzBytes(data)
		a, b, dst := in.floats(m*k, 1), in.floats(k*n, 1), in.floats(m*n, 1)
		got, want := slices.Clone(dst), slices.Clone(dst)
		MatMul(got, a, b, m, k, n, acc)
		MatMulNaive(want, a, b, m, k, n, acc)
		testutil.Close(t, "MatMul", got, want, 1e-5*float64(k), 1e-5)
	})
}

// GeluNew, on inputs of arbitrary bits and any length (so every split
// between 8-lane blocks and the scalar tail), into a separate dst or in
// place, and on each path this machine has: NaN → NaN, +Inf → +Inf and
// −Inf → NaN as GeluNewNaive gives them (see GeluNew), finite x within
// 1e-9 + 1e-6·|want| of GeluNewNaive (TestGeluNew's tolerance); and the
// assembly kernel and geluGo within the bound of checkGeluAsmVsGo.
func FuzzGeluNew(f *testing.F) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	f.Add(false, le32(1, -1, 0.5, 3))
	f.Add(true, le32(nan, inf, -inf, 0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e30))
	f.Add(false, le32(-5, -5.5, -6, -8, -9.6, -9.9, -9.95, -10, -10.05, -20, -1e20, 4.5, 5.02, 12))
	f.Add(true, le32(-2.9, -3, -3.3, -3.5, -1.5, -0.5, 0.25, 1e-30, -1e-30, 2, 7, 100, -100, 1e10, -1e10, 1e-38, -3e-39))
	f.Add(false, []byte{})
	f.Add(false, []byte("arbitrary bytes, four to a float32, and a tail"))
	f.Fuzz(func(t *testing.T, inPlace bool, data []byte) {
		src := newFuzzBytes(data).bits(len(data) / 4)
		want := make([]float32, len(src))
		GeluNewNaive(want, src)
		saved := useGeluAsm
		defer func() { useGeluAsm = saved }()
		var asm, gogo []float32
		for _, useAsm := range []bool{true, false} {
			if useAsm && !hasAVX2FMA {
				continue
			}
			useGeluAsm = useAsm
			got := make([]float32, len(src))
			if inPlace {
				copy(got, src)
				GeluNew(got, got)
			} else {
				GeluNew(got, src)
			}
			for i, w := range want {
				g, wd := got[i], float64(w)
				var ok bool
				switch {
				case w != w:
					ok = g != g
				case math.IsInf(wd, 0):
					ok = g == w
				default:
					ok = math.Abs(float64(g)-wd) <= 1e-9+1e-6*math.Abs(wd)
				}
				if !ok {
					t.Fatalf("asm %v: GeluNew(%.9g) = %.9g, GeluNewNaive %.9g", useAsm, src[i], g, w)
				}
			}
			if useAsm {
				asm = got
			} else {
				gogo = got
			}
		}
		if asm != nil {
			checkGeluAsmVsGo(t, src, asm, gogo)
		}
	})
}

// LayerNormPre equals LayerNormPreNaive within TestLayerNormPre's 1e-6
// absolute plus relative, on up to 8 rows of 1..96 values in [−128, 128),
// so rows of large mean, near-constant rows (variance below eps) and
// constant rows, into a separate dst or in place. Both work in float64;
// their results differ by at most a float32 rounding.
func FuzzLayerNormPre(f *testing.F) {
	f.Add(uint8(1), uint8(1), false, le16(0.5, 0.75))
	f.Add(uint8(9), uint8(47), true, []byte{})
	f.Add(uint8(2), uint8(3), false, le16(0.99, 0.99, 0.99, 0.5, 0.5, 0.5))           // constant rows
	f.Add(uint8(1), uint8(3), true, le16(0.99, 0.99, 0.99+1.0/32768, -0.25, 0.25, 0)) // variance ≪ eps
	f.Add(uint8(4), uint8(95), false, []byte("layer norm"))
	f.Fuzz(func(t *testing.T, m8, c8 uint8, inPlace bool, data []byte) {
		m, c := int(m8)%9, 1+int(c8)%96
		src := newFuzzBytes(data).floats(m*c, 128)
		want := make([]float32, m*c)
		LayerNormPreNaive(want, src, m, c, LayerNormEps)
		got := make([]float32, m*c)
		if inPlace {
			copy(got, src)
			LayerNormPre(got, got, m, c, LayerNormEps)
		} else {
			LayerNormPre(got, src, m, c, LayerNormEps)
		}
		testutil.Close(t, "LayerNormPre", got, want, 1e-6, 1e-6)
	})
}

// CrossEntropyRows equals CrossEntropyRowsNaive within TestCrossEntropyRows'
// 1e-5 absolute plus 1e-6 relative, on up to 4 rows of 1..300 logits in
// [−1024, 1024) and any targets. The logits sit on a grid of 1/32, so
// x − max is exact in float32 and the kernel's error is expf's (2e-7
// relative, in log-sum-exp absolute) and the final float32 rounding.
func FuzzCrossEntropyRows(f *testing.F) {
	f.Add(uint8(1), uint16(1), le16(0.5))
	f.Add(uint8(1), uint16(4), le16(0, 0, 0, 0, 0))
	f.Add(uint8(3), uint16(299), []byte("cross-entropy"))
	f.Add(uint8(2), uint16(5), le16(0.99, -0.99, 0, 0.5, -0.5, -0.99, 0.99, 0.99, 0.99, 0.99))
	f.Fuzz(func(t *testing.T, m8 uint8, v16 uint16, data []byte) {
		m, v := int(m8)%5, 1+int(v16)%300
		in := newFuzzBytes(data)
		logits := in.floats(m*v, 1024)
		target := make([]int32, m)
		for i := range target {
			target[i] = int32(int(in.uint16()) % v)
		}
		got, want := make([]float32, m), make([]float32, m)
		CrossEntropyRowsNaive(want, logits, target, m, v)
		saved := useExpSumAsm
		defer func() { useExpSumAsm = saved }()
		for _, asm := range []bool{hasAVX2FMA, false} {
			useExpSumAsm = asm
			CrossEntropyRows(got, logits, target, m, v)
			testutil.Close(t, fmt.Sprintf("CrossEntropyRows (asm %v)", asm), got, want, 1e-5, 1e-6)
		}
	})
}

// CausalAttention equals CausalAttentionNaive on B ≤ 2, T ≤ 80 (one or two
// row blocks of attnBlock), H ≤ 3, D ≤ 8, 1..3 workers, q, k and v in
// [−2, 2), to 2e-5 relative (as TestCausalAttention) plus an absolute
// bound from float32 rounding rather than TestCausalAttention's 2e-6,
// which fits its random data but not an output that cancels: with
// A = max|qkv|, each score, and its difference from the row's maximum, is
// off by at most δ = (D+3)·2⁻²⁴·D·A²/√D, which moves the softmax weights
// by at most 2δ relative and the output by 2δ·A; the exponentials and the
// normalisation add 1e-6·A, and the product with V (T+1)·2⁻²⁴·A.
func FuzzCausalAttention(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), le16(0.5, 0.25, -0.5))
	f.Add(uint8(2), uint8(7), uint8(3), uint8(4), uint8(3), []byte{})
	f.Add(uint8(1), uint8(79), uint8(2), uint8(8), uint8(2), []byte("attention"))
	f.Add(uint8(2), uint8(64), uint8(1), uint8(8), uint8(1), []byte{0xff})
	f.Add(uint8(1), uint8(65), uint8(1), uint8(2), uint8(3), le16(0.99, 0.99, -0.99, -0.99))
	f.Fuzz(func(t *testing.T, b8, t8, h8, d8, w8 uint8, data []byte) {
		b, tt, h, d, workers := 1+int(b8)%2, 1+int(t8)%80, 1+int(h8)%3, 1+int(d8)%8, 1+int(w8)%3
		qkv := newFuzzBytes(data).floats(b*tt*3*h*d, 2)
		want := make([]float32, b*tt*h*d)
		CausalAttentionNaive(want, qkv, b, tt, h, d)
		got := make([]float32, b*tt*h*d)
		CausalAttention(got, qkv, make([]float32, workers*ScratchSize(tt)), b, tt, h, d)
		const u = 0x1p-24
		a := testutil.MaxAbs(qkv)
		delta := float64(d+3) * u * float64(d) * a * a / math.Sqrt(float64(d))
		abs := 2e-6 + a*(2*delta+1e-6+float64(tt+1)*u)
		testutil.Close(t, "CausalAttention", got, want, abs, 2e-5)
	})
}

// Axpy equals y + a·x with the product and the sum each rounded to
// float32 (axpyRef), bit for bit or NaN for NaN, on x, y and a of
// arbitrary bits (NaN, ±Inf, overflow), any length, x apart from y or the
// same slice, on each path; a == 0 (either sign) leaves y as it is.
func FuzzAxpy(f *testing.F) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	f.Add(float32(2), false, le32(1, 2, 3, 4))
	f.Add(float32(0), false, le32(inf, nan, 1, 3))
	f.Add(float32(math.Copysign(0, -1)), true, le32(float32(math.Copysign(0, -1)), 1))
	f.Add(float32(math.MaxFloat32), false, le32(2, 0, -2, 0))
	f.Add(inf, true, le32(0, 1, -1, nan))
	f.Add(float32(-0.37), false, []byte("axpy: eight bytes per element, x then y"))
	f.Fuzz(func(t *testing.T, a float32, inPlace bool, data []byte) {
		in := newFuzzBytes(data)
		n := len(data) / 8
		x0, y0 := in.bits(n), in.bits(n)
		if inPlace {
			x0 = y0
		}
		want := axpyRef(y0, a, x0)
		if a == 0 {
			want = slices.Clone(y0)
		}
		saved := useAxpyAsm
		defer func() { useAxpyAsm = saved }()
		for _, useAsm := range []bool{true, false} {
			if useAsm && !hasAVX2FMA {
				continue
			}
			useAxpyAsm = useAsm
			y := slices.Clone(y0)
			x := x0
			if inPlace {
				x = y
			}
			Axpy(y, a, x)
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(want[i]) && !(y[i] != y[i] && want[i] != want[i]) {
					t.Fatalf("asm %v: Axpy(a=%g)[%d], x=%g y=%g: got %.9g, want %.9g", useAsm, a, i, x0[i], y0[i], y[i], want[i])
				}
			}
		}
	})
}

// AdamWStep.Update's assembly kernel equals updateGo bit for bit (or NaN
// for NaN) on θ, m, v and g of arbitrary bits (negative v included), any
// length, with and without a gradient, for the step that TorchAdamWStep
// makes of any lr, weight decay and step count. Where the CPU has no
// assembly kernel Update is updateGo and this checks nothing.
func FuzzAdamWUpdate(f *testing.F) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	f.Add(1e-3, 0.01, uint32(1), false, le32(0.1, 0.01, 0.0001, 0.5))
	f.Add(1e-3, 0.0, uint32(10), true, le32(0.1, 0.01, 0.0001, 0.5, -0.2, 0, 0, 0))
	f.Add(3e-4, 0.1, uint32(1000), false, le32(nan, inf, -inf, 1, 1e-30, 1e-40, -1, 0, 0.1, 0.2, 0.3, 0.4, 5, 6, 7, 8))
	f.Add(1e-2, 1e-5, uint32(123456), false, []byte("adamw: sixteen bytes per element, so nine of them and some"))
	f.Fuzz(func(t *testing.T, lr, wd float64, step uint32, nilG bool, data []byte) {
		if !hasAVX2FMA {
			t.Skip("no assembly kernel on this CPU/architecture")
		}
		k := TorchAdamWStep(lr, wd, beta1, beta2, eps, int(step))
		in := newFuzzBytes(data)
		n := len(data) / 16
		theta, m, v, g := in.bits(n), in.bits(n), in.bits(n), in.bits(n)
		if nilG {
			g = nil
		}
		wt, wm, wv := adamwGo(k, theta, m, v, g)
		saved := useAdamWAsm
		defer func() { useAdamWAsm = saved }()
		useAdamWAsm = true
		k.Update(theta, m, v, g)
		adamwSame(t, "theta", theta, wt)
		adamwSame(t, "m", m, wm)
		adamwSame(t, "v", v, wv)
	})
}
