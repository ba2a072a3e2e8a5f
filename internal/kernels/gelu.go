package kernels

import "math"

// gelu_new coefficients (TransformerLens utils.gelu_new, the tanh
// approximation of Hendrycks & Gimpel): sqrt(2/π) and 0.044715.
const (
	geluSqrt2OverPi = 0.7978845608028654
	geluCubic       = 0.044715
)

// GeluNew sets dst[i] = gelu_new(src[i]) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// It uses the identity 0.5·(1 + tanh(u)) = 1/(1 + e^(−2u)), which needs one
// exponential instead of a tanh; the result agrees with GeluNewNaive to a few
// float32 ulps. dst may alias src.
func GeluNew(dst, src []float32) {
	if len(dst) != len(src) {
		panic("kernels: GeluNew length mismatch")
	}
	ParallelFor(len(src)/1024+1, func(lo, hi int) {
		lo, hi = lo*1024, min(hi*1024, len(src))
		d, s := dst[lo:hi], src[lo:hi]
		for i, x := range s {
			u := geluSqrt2OverPi * (x + geluCubic*x*x*x)
			d[i] = x / (1 + expf(-2*u))
		}
	})
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
