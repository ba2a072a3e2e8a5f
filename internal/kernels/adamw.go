package kernels

import "math"

// AdamWStep holds one AdamW step's scalars in the float32 forms that
// torch's _single_tensor_adamw applies them (Python floats meeting float32
// tensors): decay = 1 − lr·wd, β1, 1 − β1, β2, 1 − β2, sqrt(1 − β2^t),
// step size lr / (1 − β1^t), and eps.
type AdamWStep struct {
	Decay, B1, B1c, B2, B2c, BC2Sqrt, StepSize, Eps float32
}

// Update applies the step to parameters theta with moments m and v and
// gradient g (nil means zero: the parameters still decay and move, as in
// torch, where every parameter has a gradient, zero or not):
//
//	θ ← θ·decay; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
//	θ ← θ − step·m / (sqrt(v)/sqrt(1−β2^t) + eps)
//
// All slices have the same length.
func (k *AdamWStep) Update(theta, m, v, g []float32) {
	if len(m) != len(theta) || len(v) != len(theta) || (g != nil && len(g) != len(theta)) {
		panic("kernels: AdamWStep.Update length mismatch")
	}
	k.updateGo(theta, m, v, g)
}

// updateGo is the reference for Update, in the operation order of torch.
func (k *AdamWStep) updateGo(theta, m, v, g []float32) {
	for i := range theta {
		var gi float32
		if g != nil {
			gi = g[i]
		}
		th := theta[i] * k.Decay
		mi := m[i]*k.B1 + gi*k.B1c
		vi := v[i]*k.B2 + k.B2c*gi*gi
		denom := float32(math.Sqrt(float64(vi)))/k.BC2Sqrt + k.Eps
		theta[i] = th - k.StepSize*mi/denom
		m[i], v[i] = mi, vi
	}
}
