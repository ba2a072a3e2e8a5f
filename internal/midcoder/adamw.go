package midcoder

import (
	"math"
)

// AdamW defaults of torch.optim.AdamW (betas, eps); lr and weight decay
// come from the notebook's config (SPEC §4.2).
const (
	Beta1 = 0.9
	Beta2 = 0.999
	Eps   = 1e-8
)

// AdamW holds the optimizer state of W_mid and b_mid.
type AdamW struct {
	WeightDecay float64
	Step        int       // completed steps
	MW, VW      []float32 // (F, C) first and second moments of W_mid
	MB, VB      []float32 // (C) of b_mid
}

// NewAdamW returns zero state for p.
func NewAdamW(p *Params, weightDecay float64) *AdamW {
	return &AdamW{WeightDecay: weightDecay,
		MW: make([]float32, len(p.WMid)), VW: make([]float32, len(p.WMid)),
		MB: make([]float32, len(p.BMid)), VB: make([]float32, len(p.BMid))}
}

// coeffs are one step's scalars, in the float32 forms torch's
// _single_tensor_adamw applies them (Python floats meeting float32 tensors).
type coeffs struct {
	decay    float32 // 1 − lr·wd
	b1, b1c  float32 // β1, 1 − β1
	b2, b2c  float32 // β2, 1 − β2
	bc2sqrt  float32 // sqrt(1 − β2^t)
	stepSize float32 // lr / (1 − β1^t)
	eps      float32
}

func (o *AdamW) coeffs(lr float64, t int) coeffs {
	bc1 := 1 - math.Pow(Beta1, float64(t))
	bc2 := 1 - math.Pow(Beta2, float64(t))
	return coeffs{
		decay: float32(1 - lr*o.WeightDecay),
		b1:    Beta1, b1c: float32(1 - Beta1),
		b2: Beta2, b2c: float32(1 - Beta2),
		bc2sqrt:  float32(math.Sqrt(bc2)),
		stepSize: float32(lr / bc1),
		eps:      Eps,
	}
}

// update applies one AdamW step to θ with moments m, v and gradient g
// (nil means zero: the parameter still decays and moves, as in torch,
// where every parameter of W_mid has a gradient, zero or not):
//
//	θ ← θ·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
//	θ ← θ − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
func (k *coeffs) update(theta, m, v, g []float32) {
	for i := range theta {
		var gi float32
		if g != nil {
			gi = g[i]
		}
		th := theta[i] * k.decay
		mi := m[i]*k.b1 + gi*k.b1c
		vi := v[i]*k.b2 + k.b2c*gi*gi
		denom := float32(math.Sqrt(float64(vi)))/k.bc2sqrt + k.eps
		theta[i] = th - k.stepSize*mi/denom
		m[i], v[i] = mi, vi
	}
}

// stepDense is the reference AdamW step on dense gradients gW (F·C) and
// gB (C).
func (o *AdamW) stepDense(p *Params, gW, gB []float32, lr float64) {
	o.Step++
	k := o.coeffs(lr, o.Step)
	k.update(p.WMid, o.MW, o.VW, gW)
	k.update(p.BMid, o.MB, o.VB, gB)
}

func sqrtf(x float64) float32 { return float32(math.Sqrt(x)) }
