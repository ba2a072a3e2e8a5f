package midcoder

import (
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// DenseStep is the reference for Trainer.Step, computed as PyTorch does it:
// the activations expanded to a dense (M, F) matrix, mid = acts @ W_mid +
// b_mid by one GEMM, the W_mid gradient as the dense GEMM accsᵀ @ d mid, and
// AdamW over dense gradients. It uses tr's parameters, optimizer and MLP,
// allocates its dense buffers, and returns the same loss and loss_norm.
func (tr *Trainer) DenseStep(acts *transcoder.Acts, y []float32, lr float64) (loss, lossNorm float64) {
	p, c, n := tr.Params, tr.MLP.C, tr.MLP.N
	m, f := acts.Rows(), p.F
	dense := acts.Dense(f) // (M, F)
	mid := make([]float32, m*c)
	kernels.Linear(mid, dense, p.WMid, p.BMid, m, f, c)
	pre := make([]float32, m*n)
	kernels.Linear(pre, mid, tr.MLP.WIn, tr.MLP.BIn, m, c, n)
	h := make([]float32, m*n)
	if tr.MLP.Act == ReLU {
		for i, v := range pre {
			h[i] = max(v, 0)
		}
	} else {
		kernels.GeluNewNaive(h, pre)
	}
	out := make([]float32, m*c)
	kernels.Linear(out, h, tr.MLP.WOut, tr.MLP.BOut, m, n, c)
	loss, meanY2 := lossAndGrad(out, y)
	dh := make([]float32, m*n)
	kernels.MatMul(dh, out, tr.MLP.wOutT, m, c, n, false)
	if tr.MLP.Act == ReLU {
		for i, v := range pre {
			if v <= 0 {
				dh[i] = 0
			}
		}
	} else {
		kernels.GeluNewBackward(dh, pre)
	}
	dmid := make([]float32, m*c)
	kernels.MatMul(dmid, dh, tr.MLP.wInT, m, n, c, false)
	gW := make([]float32, f*c)
	kernels.MatMul(gW, kernels.Transpose(dense, m, f), dmid, f, m, c, false)
	gB := make([]float32, c)
	for r := 0; r < m; r++ {
		for j := 0; j < c; j++ {
			gB[j] += dmid[r*c+j]
		}
	}
	tr.Opt.stepDense(p, gW, gB, lr)
	return loss, loss / meanY2
}
