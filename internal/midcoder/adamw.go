package midcoder

import (
	"math"
	"slices"

	"github.com/ctxdep/ctxdep/internal/kernels"
)

// AdamW defaults of torch.optim.AdamW (betas, eps); lr and weight decay
// come from the notebook's config.
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

// UntrainedRows returns the rows of W_mid (f rows of c) whose second
// moment is zero throughout: rows that never got a non-zero gradient, so
// that AdamW left them at their initial value but for weight decay. A
// feature's row gets a gradient in every batch where it fires, and its
// second moment then stays positive (it decays by β₂ per step: only some
// 10⁵ steps after the last firing could it underflow to zero). It returns
// an empty, non-nil slice when every row trained.
func (o *AdamW) UntrainedRows(f, c int) []int {
	rows := []int{}
	for i := range f {
		if !slices.ContainsFunc(o.VW[i*c:(i+1)*c], func(v float32) bool { return v != 0 }) {
			rows = append(rows, i)
		}
	}
	return rows
}

// Coeffs returns the scalars of AdamW step t at learning rate lr, as
// torch computes them; a GPU backend applies them with its own kernel.
func (o *AdamW) Coeffs(lr float64, t int) kernels.AdamWStep {
	return kernels.TorchAdamWStep(lr, o.WeightDecay, Beta1, Beta2, Eps, t)
}

// stepDense is the reference AdamW step on dense gradients gW (F·C) and
// gB (C).
func (o *AdamW) stepDense(p *Params, gW, gB []float32, lr float64) {
	o.Step++
	k := o.Coeffs(lr, o.Step)
	k.Update(p.WMid, o.MW, o.VW, gW)
	k.Update(p.BMid, o.MB, o.VB, gB)
}

func sqrtf(x float64) float32 { return float32(math.Sqrt(x)) }
