package midcoder

import (
	"fmt"
	"sort"
	"sync"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Model is a midcoder for inference: the frozen MLP and the parameters,
// with buffers for batches of up to maxRows rows. report, evaluate and the
// pinv baseline use it as it is; a Trainer adds the optimizer and the
// backward pass.
type Model struct {
	MLP    *MLP
	Params *Params

	maxRows int
	mid     []float32 // (M, C) mid, then d mid in a Trainer
	pre     []float32 // (M, N) pre-activation
	h       []float32 // (M, N) act(pre), then d pre in a Trainer
	out     []float32 // (M, C) output, then d out in a Trainer
}

// NewModel returns the midcoder p through mlp, for batches of up to
// maxRows rows.
func NewModel(mlp *MLP, p *Params, maxRows int) *Model {
	c, n := mlp.C, mlp.N
	if p.C != c {
		panic(fmt.Sprintf("midcoder: params width %d, MLP width %d", p.C, c))
	}
	return &Model{MLP: mlp, Params: p, maxRows: maxRows,
		mid: make([]float32, maxRows*c), pre: make([]float32, maxRows*n),
		h: make([]float32, maxRows*n), out: make([]float32, maxRows*c)}
}

// Trainer runs training steps on batches of up to maxRows rows, reusing its
// buffers: a step allocates only small per-worker scratch (row cursors,
// and the closures and goroutines of its parallel loops); the workers'
// gradient blocks are kept in a pool.
type Trainer struct {
	*Model
	Opt *AdamW

	colPtr []int32   // (F+1) acts transposed to CSC: rows where feature f is active
	colRow []int32   // (nnz)
	colVal []float32 // (nnz)
	fill   []int32   // (F)
	gB     []float64 // (C)
	gBf    []float32 // (C)

	scratch sync.Pool // *blockScratch for updateBlocked's workers
}

// NewTrainer returns a trainer for batches of up to maxRows rows.
func NewTrainer(mlp *MLP, p *Params, opt *AdamW, maxRows int) *Trainer {
	return &Trainer{Model: NewModel(mlp, p, maxRows), Opt: opt,
		colPtr: make([]int32, p.F+1), fill: make([]int32, p.F),
		gB: make([]float64, mlp.C), gBf: make([]float32, mlp.C)}
}

// Forward sets out (M, C) to the midcoder's output for acts, keeping what
// a Trainer's backward pass needs, and returns it (a view, valid until the
// next call).
func (md *Model) Forward(acts *transcoder.Acts) []float32 {
	m, c, n := acts.Rows(), md.MLP.C, md.MLP.N
	pre, h, out := md.PreActivations(acts), md.h[:m*n], md.out[:m*c]
	switch md.MLP.Act {
	case ReLU:
		par.Chunks(len(pre), 4096, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				h[i] = max(pre[i], 0)
			}
		})
	case GeluNew:
		kernels.GeluNew(h, pre)
	}
	kernels.Linear(out, h, md.MLP.WOut, md.MLP.BOut, m, n, c)
	return out
}

// PreActivations sets and returns the MLP's pre-activations mid @ W_in +
// b_in (M, N) for acts, with mid = acts @ W_mid + b_mid gathered from the
// active rows of W_mid only; a view into md, valid until its next use.
func (md *Model) PreActivations(acts *transcoder.Acts) []float32 {
	m, c, n := acts.Rows(), md.MLP.C, md.MLP.N
	if m > md.maxRows {
		panic(fmt.Sprintf("midcoder: %d rows exceed the model's %d", m, md.maxRows))
	}
	kernels.Linear(md.pre[:m*n], md.gather(acts), md.MLP.WIn, md.MLP.BIn, m, c, n)
	return md.pre[:m*n]
}

// gather sets and returns mid = acts @ W_mid + b_mid (M, C), a view into
// md: each row b_mid plus its active rows of W_mid scaled by their
// activations, summed in the order acts lists them. W_mid (75 MB at
// GPT-2-small shapes) does not fit in cache and the rows come in random
// order, so where the rows list their features in ascending order (as the
// encoder emits them) the gather goes through W_mid in blocks of
// gatherBlockBytes, each row taking its features from one block before the
// next: each element's sum runs in the same order, so to the same bits,
// and each block's rows are read from memory about once.
func (md *Model) gather(acts *transcoder.Acts) []float32 {
	m, c := acts.Rows(), md.MLP.C
	mid, p := md.mid[:m*c], md.Params
	if unblocked || !ascending(acts) {
		par.For(m, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := mid[r*c : (r+1)*c]
				copy(row, p.BMid)
				idx, val := acts.Row(r)
				for i, f := range idx {
					kernels.Axpy(row, val[i], p.WMid[int(f)*c:(int(f)+1)*c])
				}
			}
		})
		return mid
	}
	blocks := max(1, (p.F*c*4+gatherBlockBytes-1)/gatherBlockBytes)
	par.For(m, func(lo, hi int) {
		cur := make([]int, hi-lo) // each row's next entry
		for r := lo; r < hi; r++ {
			cur[r-lo] = int(acts.Indptr[r])
			copy(mid[r*c:(r+1)*c], p.BMid)
		}
		for q := 1; q <= blocks; q++ {
			fEnd := int32(q * p.F / blocks)
			for r := lo; r < hi; r++ {
				row := mid[r*c : (r+1)*c]
				j, e := cur[r-lo], int(acts.Indptr[r+1])
				for ; j < e && acts.Indices[j] < fEnd; j++ {
					f := int(acts.Indices[j])
					kernels.Axpy(row, acts.Values[j], p.WMid[f*c:(f+1)*c])
				}
				cur[r-lo] = j
			}
		}
	})
	return mid
}

// gatherBlockBytes and scatterBlockBytes are the sizes of the blocks of
// W_mid that gather and update work through: a few MB, to stay in the L3
// cache that the cores share with the rest of the machine.
// The sizes were chosen by hand-run trials of BenchmarkStepParts at
// GPT-2-small shapes on a 2-core AMD EPYC (Zen 4, 32 MB L3), editing these
// values between runs (no benchmark sweeps them): 4.7 to 9.4 MB gather
// blocks and 4 MB scatter blocks did best, 1 MB blocks worse than none.
// Variables for the test that blocked and unblocked paths (unblocked set)
// give the same bits.
var (
	gatherBlockBytes  = 6 << 20
	scatterBlockBytes = 4 << 20
	unblocked         bool
)

// ascending reports whether every row of acts lists its features in
// strictly ascending order.
func ascending(acts *transcoder.Acts) bool {
	for r := 0; r < acts.Rows(); r++ {
		idx, _ := acts.Row(r)
		for i := 1; i < len(idx); i++ {
			if idx[i] <= idx[i-1] {
				return false
			}
		}
	}
	return true
}

// Loss returns mean((out − y)²) and mean(y²) over all elements,
// accumulated in float64.
func Loss(out, y []float32) (loss, meanY2 float64) {
	var se, sy float64
	for i, o := range out {
		d := float64(o) - float64(y[i])
		se += d * d
		sy += float64(y[i]) * float64(y[i])
	}
	n := float64(len(out))
	return se / n, sy / n
}

// Step runs forward, loss, backward and one AdamW update at learning rate
// lr on a batch, and returns the batch's loss and loss_norm (computed before
// the update, as the notebook records them).
func (tr *Trainer) Step(acts *transcoder.Acts, y []float32, lr float64) (loss, lossNorm float64) {
	if m, c := acts.Rows(), tr.MLP.C; len(y) != m*c {
		panic(fmt.Sprintf("midcoder: y has %d values, want %d×%d", len(y), m, c))
	}
	loss, meanY2, dmid := tr.backward(acts, y)
	tr.update(acts, dmid, lr)
	return loss, loss / meanY2
}

// backward runs the forward pass and back-propagates the loss to mid: it
// returns the loss, mean(y²) and d loss / d mid (M, C), a view into tr.
func (tr *Trainer) backward(acts *transcoder.Acts, y []float32) (loss, meanY2 float64, dmid []float32) {
	m, c, n := acts.Rows(), tr.MLP.C, tr.MLP.N
	out := tr.Forward(acts)
	loss, meanY2 = lossAndGrad(out, y)
	// out now holds d loss / d out. Backward through the MLP:
	dh := tr.h[:m*n]
	kernels.MatMul(dh, out, tr.MLP.wOutT, m, c, n, false)
	pre := tr.pre[:m*n]
	switch tr.MLP.Act {
	case ReLU:
		kernels.ReLUBackward(dh, pre)
	case GeluNew:
		kernels.GeluNewBackward(dh, pre)
	}
	dmid = tr.mid[:m*c]
	kernels.MatMul(dmid, dh, tr.MLP.wInT, m, n, c, false)
	return loss, meanY2, dmid
}

// Gradients returns the dense gradients of the loss with respect to W_mid
// (F·C) and b_mid (C) at the current parameters, without updating them.
// For tests and diagnostics: it allocates.
func (tr *Trainer) Gradients(acts *transcoder.Acts, y []float32) (gW, gB []float32) {
	_, _, dmid := tr.backward(acts, y)
	c := tr.MLP.C
	gW = make([]float32, tr.Params.F*c)
	gB = make([]float32, c)
	for r := 0; r < acts.Rows(); r++ {
		idx, val := acts.Row(r)
		for i, f := range idx {
			kernels.Axpy(gW[int(f)*c:(int(f)+1)*c], val[i], dmid[r*c:(r+1)*c])
		}
		kernels.Axpy(gB, 1, dmid[r*c:(r+1)*c])
	}
	return gW, gB
}

// lossAndGrad returns the loss and mean(y²), and replaces out by the
// gradient of the loss, 2·(out − y)/(M·C).
func lossAndGrad(out, y []float32) (loss, meanY2 float64) {
	loss, meanY2 = Loss(out, y)
	scale := float32(2 / float64(len(out)))
	for i := range out {
		out[i] = scale * (out[i] - y[i])
	}
	return loss, meanY2
}

// update computes the gradients of W_mid (one row per feature, from the
// rows where it is active) and b_mid from dmid, and applies AdamW to every
// parameter.
func (tr *Trainer) update(acts *transcoder.Acts, dmid []float32, lr float64) {
	p, c, o := tr.Params, tr.MLP.C, tr.Opt
	m := acts.Rows()
	clear(tr.gB)
	for r := 0; r < m; r++ {
		for j, v := range dmid[r*c : (r+1)*c] {
			tr.gB[j] += float64(v)
		}
	}
	for j, v := range tr.gB {
		tr.gBf[j] = float32(v)
	}
	o.Step++
	k := o.Coeffs(lr, o.Step)
	k.Update(p.BMid, o.MB, o.VB, tr.gBf)
	if !unblocked && ascending(acts) {
		tr.updateBlocked(acts, dmid, k)
		return
	}
	tr.transposeActs(acts)
	par.For(p.F, func(lo, hi int) {
		g := make([]float32, c) // once per worker per step
		for f := lo; f < hi; f++ {
			w := p.WMid[f*c : (f+1)*c]
			mw, vw := o.MW[f*c:(f+1)*c], o.VW[f*c:(f+1)*c]
			a, b := tr.colPtr[f], tr.colPtr[f+1]
			if a == b {
				k.Update(w, mw, vw, nil)
				continue
			}
			clear(g)
			for i := a; i < b; i++ {
				r := int(tr.colRow[i])
				kernels.Axpy(g, tr.colVal[i], dmid[r*c:(r+1)*c])
			}
			k.Update(w, mw, vw, g)
		}
	})
}

// updateBlocked is update's W_mid part where the rows of acts list their
// features in ascending order: W_mid in blocks of scatterBlockBytes, each
// block's gradient summed in a buffer (rows of d mid in ascending order,
// as the CSC path sums them, so to the same bits) and then stepped by
// AdamW while still in cache. The CSC path reads the rows of d mid (25 MB
// at B = 64) in random order, from memory, for every feature.
func (tr *Trainer) updateBlocked(acts *transcoder.Acts, dmid []float32, k kernels.AdamWStep) {
	p, c, o := tr.Params, tr.MLP.C, tr.Opt
	m := acts.Rows()
	per := max(1, scatterBlockBytes/(4*c)) // features per block
	nb := (p.F + per - 1) / per
	par.For(nb, func(lo, hi int) {
		sc, _ := tr.scratch.Get().(*blockScratch)
		if sc == nil {
			sc = new(blockScratch)
		}
		defer tr.scratch.Put(sc)
		if cap(sc.g) < per*c {
			sc.g = make([]float32, per*c)
		}
		if cap(sc.cur) < m {
			sc.cur = make([]int, m)
		}
		g, cur := sc.g[:per*c], sc.cur[:m] // a block's gradient; each row's next entry
		f0 := int32(lo * per)
		for r := range m {
			idx, _ := acts.Row(r)
			cur[r] = int(acts.Indptr[r]) + sort.Search(len(idx), func(i int) bool { return idx[i] >= f0 })
		}
		for q := lo; q < hi; q++ {
			b0, b1 := q*per, min((q+1)*per, p.F)
			g := g[:(b1-b0)*c]
			clear(g)
			for r := range m {
				j, e := cur[r], int(acts.Indptr[r+1])
				d := dmid[r*c : (r+1)*c]
				for ; j < e && int(acts.Indices[j]) < b1; j++ {
					f := int(acts.Indices[j]) - b0
					kernels.Axpy(g[f*c:(f+1)*c], acts.Values[j], d)
				}
				cur[r] = j
			}
			k.Update(p.WMid[b0*c:b1*c], o.MW[b0*c:b1*c], o.VW[b0*c:b1*c], g)
		}
	})
}

// blockScratch is a worker's buffers in updateBlocked.
type blockScratch struct {
	g   []float32
	cur []int
}

// transposeActs fills the CSC form of acts (counting sort by feature), so
// that each feature's gradient row is summed by one worker without locks.
func (tr *Trainer) transposeActs(acts *transcoder.Acts) {
	nnz := len(acts.Indices)
	if cap(tr.colRow) < nnz {
		tr.colRow = make([]int32, nnz, nnz+nnz/4)
		tr.colVal = make([]float32, nnz, nnz+nnz/4)
	}
	tr.colRow, tr.colVal = tr.colRow[:nnz], tr.colVal[:nnz]
	clear(tr.colPtr)
	for _, f := range acts.Indices {
		tr.colPtr[f+1]++
	}
	for f := 0; f < len(tr.fill); f++ {
		tr.colPtr[f+1] += tr.colPtr[f]
		tr.fill[f] = tr.colPtr[f]
	}
	for r := 0; r < acts.Rows(); r++ {
		idx, val := acts.Row(r)
		for i, f := range idx {
			j := tr.fill[f]
			tr.colRow[j], tr.colVal[j] = int32(r), val[i]
			tr.fill[f]++
		}
	}
}
