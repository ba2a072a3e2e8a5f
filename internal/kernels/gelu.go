package kernels

import (
	"math"

	"github.com/ctxdep/ctxdep/internal/par"
)

// gelu_new coefficients (TransformerLens utils.gelu_new, the tanh
// approximation of Hendrycks & Gimpel): sqrt(2/π) and 0.044715.
const (
	geluSqrt2OverPi = 0.7978845608028654
	geluCubic       = 0.044715
)

// GeluNew sets dst[i] = gelu_new(src[i]) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// It uses the identity 0.5·(1 + tanh(u)) = 1/(1 + e^(−2u)), which needs one
// exponential instead of a tanh, evaluated in float32 (expf32); the result
// is within 1e-6 relative (1e-9 absolute in the far negative tail) of the
// float64 formula, closer than PyTorch's float32 1 + tanh(u), which cancels
// to 0 there. dst may alias src.
//
// On amd64 with AVX2 and FMA the blocks of 8 go through an assembly kernel
// (gelu_amd64.s, same algorithm, 8 lanes at a time, fused multiply-adds), the
// rest through geluGo: gelu_new runs over every MLP activation of the
// GPT-2 forward, enough elements for scalar Go to be a sizeable share of
// it (BenchmarkGeluNew times the kernel against geluGo in the same run).
//
// Special values: NaN gives NaN, +Inf gives +Inf, and x below ≈ −10 (where
// e^(−2u) overflows float32 and |gelu_new(x)| < 1e-37) gives −0, so −Inf
// gives −Inf/+Inf = NaN, as does the float64 formula (−Inf·0).
func GeluNew(dst, src []float32) {
	if len(dst) != len(src) {
		panic("kernels: GeluNew length mismatch")
	}
	par.Chunks(len(src), 4096, func(lo, hi int) {
		geluRange(dst[lo:hi], src[lo:hi])
	})
}

// GeluNewBackward multiplies dh by gelu_new'(pre), the derivative of the
// gelu_new formula (not of GeluNew's float32 evaluation), in float64 with
// math.Tanh:
//
//	0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)
//
// with u = √(2/π)·(x + 0.044715·x³). dh and pre have the same length.
func GeluNewBackward(dh, pre []float32) {
	if len(dh) != len(pre) {
		panic("kernels: GeluNewBackward length mismatch")
	}
	par.Chunks(len(dh), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := float64(pre[i])
			t := math.Tanh(geluSqrt2OverPi * (x + geluCubic*x*x*x))
			d := 0.5*(1+t) + 0.5*x*(1-t*t)*geluSqrt2OverPi*(1+3*geluCubic*x*x)
			dh[i] = float32(float64(dh[i]) * d)
		}
	})
}

// geluRange is GeluNew on one chunk: the assembly kernel where useGeluAsm
// (set at start-up from the CPU's features, switched off by tests to reach
// the Go path) takes the leading multiple of its block, geluGo the rest.
func geluRange(dst, src []float32) {
	dst = dst[:len(src)]
	n := 0
	if useGeluAsm {
		n = geluAsm(dst, src)
	}
	geluGo(dst[n:], src[n:])
}

// geluGo is the portable GeluNew: z = −2u in float32, e^z by expf32, and
// x/(1 + e^z). expf32 clamps z at 88, where e^z is still finite, so z > 88
// is taken as e^z = +Inf: the result is then −0 for finite x (|gelu_new| <
// 1e-37 there) instead of x/e^88, which is not small once |x| ≳ 1e30.
func geluGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		z := -2 * geluSqrt2OverPi * (x + geluCubic*x*x*x)
		e := expf32(z)
		if z > 88 {
			e = float32(math.Inf(1))
		}
		dst[i] = x / (1 + e)
	}
}

// GeluNewNaive is the reference for GeluNew: the formula in float64 with
// math.Tanh.
func GeluNewNaive(dst, src []float32) {
	for i, v := range src {
		x := float64(v)
		dst[i] = float32(0.5 * x * (1 + math.Tanh(geluSqrt2OverPi*(x+geluCubic*x*x*x))))
	}
}

// expf returns e^x in float32 precision (relative error below 2e-7 over the
// whole range, +Inf above ≈88.72, 0 below ≈−103.3): range reduction
// x = n·ln2 + r with |r| ≤ ln2/2, a degree-7 Taylor polynomial for e^r
// evaluated in float64, and 2^n applied through the exponent bits.
func expf(x float32) float32 {
	switch {
	case x > 88.72284:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	case x != x:
		return x
	}
	xd := float64(x)
	n := math.Floor(xd*math.Log2E + 0.5)
	r := xd - n*math.Ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	ni := int64(n)
	if ni < -1022 { // result is a float32 subnormal; scale in two steps
		return float32(p * math.Float64frombits(uint64(ni+1022+1023)<<52) * 0x1p-1022)
	}
	return float32(p * math.Float64frombits(uint64(ni+1023)<<52))
}

// expf32 returns e^x for x clamped to [−87, 88] (where e^x is a normal
// float32), all in float32 arithmetic: x = n·ln2 + r with n = round(x·log2e)
// (by the 1.5·2^23 rounding trick) and r from a two-part ln2 (Cody–Waite),
// e^r by its degree-7 Taylor polynomial (truncation < 5e-9 for |r| ≤ ln2/2),
// then 2^n through the exponent bits. Relative error ≈ 2e-7. Callers that
// need the range beyond the clamp use expf.
func expf32(x float32) float32 {
	x = min(max(x, -87), 88)
	const (
		log2e = 1.44269504
		ln2hi = 0.693359375    // exact in float32 with few bits
		ln2lo = -2.12194440e-4 // ln2 − ln2hi
		magic = 12582912       // 1.5·2^23: adding it rounds to an integer
	)
	t := x*log2e + magic
	n := t - magic
	bits := math.Float32bits(t) - math.Float32bits(magic) // = n as an integer
	r := x - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits((bits+127)<<23)
}
