package kernels

import "math"

// AdamWStep holds one AdamW step's scalars in the float32 forms that
// torch's _single_tensor_adamw applies them (Python floats meeting float32
// tensors): decay = 1 − lr·wd, β1, 1 − β1, β2, 1 − β2, sqrt(1 − β2^t),
// step size lr / (1 − β1^t), and eps.
type AdamWStep struct {
	Decay, B1, B1c, B2, B2c, BC2Sqrt, StepSize, Eps float32
}

// TorchAdamWStep returns step t (counted from 1) of AdamW at learning rate
// lr, weight decay weightDecay, betas beta1, beta2 and eps, computed in
// float64 as torch computes them (Python floats) before it applies them to
// float32 tensors.
func TorchAdamWStep(lr, weightDecay, beta1, beta2, eps float64, t int) AdamWStep {
	bc1 := 1 - math.Pow(beta1, float64(t))
	bc2 := 1 - math.Pow(beta2, float64(t))
	return AdamWStep{
		Decay: float32(1 - lr*weightDecay),
		B1:    float32(beta1), B1c: float32(1 - beta1),
		B2: float32(beta2), B2c: float32(1 - beta2),
		BC2Sqrt:  float32(math.Sqrt(bc2)),
		StepSize: float32(lr / bc1),
		Eps:      float32(eps),
	}
}

// Update applies the step to parameters theta with moments m and v and
// gradient g (nil means zero: the parameters still decay and move, as in
// torch, where every parameter has a gradient, zero or not):
//
//	θ ← θ·decay; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
//	θ ← θ − step·m / (sqrt(v)/sqrt(1−β2^t) + eps)
//
// All slices have the same length.
//
// On amd64 with AVX2 and FMA the blocks of 8 go through an assembly kernel
// (adamw_amd64.s: the operations of updateGo in the same order, 8 lanes at
// a time, with the exactly rounded VSQRTPS and VDIVPS and no fused
// multiply-adds, so its results equal updateGo's bit for bit), the rest
// through updateGo: the step runs over all 18.9 M parameters of the
// midcoder, where scalar Go, with a float64 square root and two divisions
// per element, takes ≈2.6 ns per element and the kernel ≈1.15, the memory
// traffic of its seven streams (BenchmarkAdamWUpdate).
//
// Moments that decay with no gradient (m by β1 per step) become float32
// subnormals after several hundred steps and stay there (0.9·k·2^−149
// rounds back to k·2^−149 for k ≤ 4); arithmetic on them is 20 to 50
// times slower on x86 in both paths, as it is in torch, which does not
// flush them either.
func (k *AdamWStep) Update(theta, m, v, g []float32) {
	if len(m) != len(theta) || len(v) != len(theta) || (g != nil && len(g) != len(theta)) {
		panic("kernels: AdamWStep.Update length mismatch")
	}
	n := 0
	if useAdamWAsm {
		n = k.updateAsm(theta, m, v, g)
	}
	if g != nil {
		g = g[n:]
	}
	k.updateGo(theta[n:], m[n:], v[n:], g)
}

// updateGo is the reference for Update, in the operation order of torch,
// every operation rounded to float32: the explicit conversions of the
// products keep the compiler from fusing them into the sums (which it
// does on amd64 from GOAMD64=v3, and on arm64), so the results do not
// depend on the target, and the assembly kernel reproduces them exactly.
func (k *AdamWStep) updateGo(theta, m, v, g []float32) {
	for i := range theta {
		var gi float32
		if g != nil {
			gi = g[i]
		}
		th := float32(theta[i] * k.Decay)
		mi := float32(m[i]*k.B1) + float32(gi*k.B1c)
		vi := float32(v[i]*k.B2) + float32(k.B2c*gi*gi)
		denom := float32(math.Sqrt(float64(vi)))/k.BC2Sqrt + k.Eps
		theta[i] = th - k.StepSize*mi/denom
		m[i], v[i] = mi, vi
	}
}
