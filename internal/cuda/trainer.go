//go:build cuda || cudasim

package cuda

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/midcoder"
)

// Trainer is midcoder.Trainer on the device: the same forward pass, loss,
// backward pass and AdamW step, with W_mid's gradient scattered densely
// (float atomics, or with Options.Deterministic in a fixed order) and
// every parameter updated each step, as torch does.
// The parameters and moments live on the device; Sync copies them to the
// host Params and AdamW (for checkpoints and the result).
type Trainer struct {
	d       *Device
	Params  *midcoder.Params
	Opt     *midcoder.AdamW
	c, n, f int
	maxRows int

	mlp              devMLP
	wmid, bmid       buf
	mw, vw, mb, vb   buf
	gw, gb           buf
	mid, pre, h, out buf
	partials, sums   buf            // mse_grad's per-block float64 pairs, and their 2 sums
	sorted           *sortedScatter // with Options.Deterministic
	all              allocList
}

// sortedScatter holds the deterministic scatter's buffers: per (feature,
// chunk of cscRows rows) counts and starts, and the active entries by
// feature (row and value), grown with the activations.
type sortedScatter struct {
	counts, starts buf // int64 (F·G), (F·G + 1)
	totals, colptr buf // int64 (F), (F + 1): per feature
	rowT, valT     buf // int32, float32 (capNNZ)
	capNNZ         int
}

// cscRows is the rows per chunk of the deterministic scatter: G =
// ⌈M / cscRows⌉ chunks fill in parallel, and the one-block scan runs over
// F·G counts (786,432 at F = 24,576, M = 8,192).
const cscRows = 256

// NewTrainer uploads the frozen MLP, p and opt, for batches of up to
// maxRows rows.
func (d *Device) NewTrainer(mlp *midcoder.MLP, p *midcoder.Params, opt *midcoder.AdamW, maxRows int) (*Trainer, error) {
	defer d.enter()()
	if p.C != mlp.C {
		return nil, fmt.Errorf("cuda: params width %d, MLP width %d", p.C, mlp.C)
	}
	t := &Trainer{d: d, Params: p, Opt: opt, c: mlp.C, n: mlp.N, f: p.F, maxRows: maxRows, all: allocList{d: d}}
	a := &t.all
	a.uploadMLP(&t.mlp, mlp)
	a.add(&t.wmid, "W_mid", len(p.WMid), 4)
	a.add(&t.bmid, "b_mid", len(p.BMid), 4)
	a.add(&t.mw, "AdamW m of W_mid", len(p.WMid), 4)
	a.add(&t.vw, "AdamW v of W_mid", len(p.WMid), 4)
	a.add(&t.mb, "AdamW m of b_mid", len(p.BMid), 4)
	a.add(&t.vb, "AdamW v of b_mid", len(p.BMid), 4)
	a.add(&t.gw, "W_mid gradient", len(p.WMid), 4)
	a.add(&t.gb, "b_mid gradient", len(p.BMid), 4)
	a.add(&t.mid, "mid", maxRows*t.c, 4)
	a.add(&t.pre, "MLP pre-activations", maxRows*t.n, 4)
	a.add(&t.h, "MLP activations", maxRows*t.n, 4)
	a.add(&t.out, "MLP output", maxRows*t.c, 4)
	a.add(&t.partials, "loss partial sums", 2*d.grid1D(maxRows*t.c), 8)
	a.add(&t.sums, "loss sums", 2, 8)
	if d.opts.Deterministic {
		t.sorted = &sortedScatter{}
		g := (maxRows + cscRows - 1) / cscRows
		a.add(&t.sorted.counts, "sorted scatter counts", t.f*g, 8)
		a.add(&t.sorted.starts, "sorted scatter starts", t.f*g+1, 8)
		a.add(&t.sorted.totals, "sorted scatter totals", t.f, 8)
		a.add(&t.sorted.colptr, "sorted scatter column starts", t.f+1, 8)
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := t.load(); err != nil {
		a.freeAll()
		return nil, err
	}
	return t, nil
}

// Free releases the trainer's device memory.
func (t *Trainer) Free() {
	defer t.d.enter()()
	t.all.freeAll()
	if t.sorted != nil {
		t.d.free(&t.sorted.rowT)
		t.d.free(&t.sorted.valT)
	}
}

// devMLP is a midcoder's MLP on the device: W_in (C, N), b_in, the
// activation, W_out (N, C), b_out.
type devMLP struct {
	win, bin, wout, bout buf
	act, c, n            int
}

// uploadMLP uploads mlp into p.
func (l *allocList) uploadMLP(p *devMLP, mlp *midcoder.MLP) {
	p.c, p.n, p.act = mlp.C, mlp.N, actOf(mlp.Act)
	l.upload(&p.win, "W_in", mlp.WIn)
	l.upload(&p.bin, "b_in", mlp.BIn)
	l.upload(&p.wout, "W_out", mlp.WOut)
	l.upload(&p.bout, "b_out", mlp.BOut)
}

// mlpForward sets out (m, C) = act(mid @ W_in + b_in) @ W_out + b_out
// (midcoder.Model.Forward after the gather), leaving the pre-activations
// in pre and the activations in h (m, N each).
func (d *Device) mlpForward(p *devMLP, out, h, pre, mid buf, m int) error {
	if err := d.gemm(false, false, m, p.n, p.c, 1, mid.p, p.c, p.win.p, p.n, 0, pre.p, p.n); err != nil {
		return err
	}
	if err := d.launch("bias_act", d.grid1D(m*p.n), 256, h, pre, p.bin, m, p.n, p.act); err != nil {
		return err
	}
	return d.linear(out, h, p.wout, p.bout, m, p.n, p.c, actNone)
}

// hostPair is a device buffer and the host slice it mirrors.
type hostPair struct {
	dev  buf
	host []float32
}

// pairs lists the parameters and AdamW moments the device holds for the
// host Params and AdamW, W_mid and b_mid first.
func (t *Trainer) pairs() [6]hostPair {
	p, o := t.Params, t.Opt
	return [6]hostPair{{t.wmid, p.WMid}, {t.bmid, p.BMid}, {t.mw, o.MW}, {t.vw, o.VW}, {t.mb, o.MB}, {t.vb, o.VB}}
}

// load copies the host Params and AdamW moments to the device.
func (t *Trainer) load() error {
	for _, c := range t.pairs() {
		if err := h2d(c.dev, c.host); err != nil {
			return err
		}
	}
	return nil
}

// Sync copies the device's parameters and moments to the host Params and
// AdamW.
func (t *Trainer) Sync() error {
	defer t.d.enter()()
	for _, c := range t.pairs() {
		if err := d2h(c.host, c.dev); err != nil {
			return err
		}
	}
	return nil
}

// SyncParams copies only W_mid and b_mid to the host Params: what a
// finished fit saves.
func (t *Trainer) SyncParams() error {
	defer t.d.enter()()
	ps := t.pairs()
	for _, c := range ps[:2] {
		if err := d2h(c.host, c.dev); err != nil {
			return err
		}
	}
	return nil
}

// step runs forward, loss, backward and one AdamW update at learning rate
// lr on acts and targets y (a device buffer (M, C)), and returns the
// batch's loss and loss_norm, computed before the update
// (midcoder.Trainer.Step). The context must be current.
func (t *Trainer) step(acts *Acts, y buf, lr float64) (loss, lossNorm float64, err error) {
	d, c, n, m := t.d, t.c, t.n, acts.M
	if m > t.maxRows {
		return 0, 0, fmt.Errorf("cuda: %d rows exceed the trainer's %d", m, t.maxRows)
	}
	o := t.Opt
	o.Step++
	k := o.Coeffs(lr, o.Step)
	// Forward: mid = acts @ W_mid + b_mid (gathered), then the MLP.
	if err := d.launch("gather_mid", m, 256, t.mid, acts.indptr, acts.idx, acts.val, t.wmid, t.bmid, c); err != nil {
		return 0, 0, err
	}
	if err := d.mlpForward(&t.mlp, t.out, t.h, t.pre, t.mid, m); err != nil {
		return 0, 0, err
	}
	// Loss and its gradient 2(out − y)/(M·C), in place.
	grid := d.grid1D(m * c)
	if err := d.launch("mse_grad", grid, 256, t.out, y, m*c, float32(2/float64(m*c)), t.partials); err != nil {
		return 0, 0, err
	}
	if err := d.launch("sum_pairs", 1, 1024, t.sums, t.partials, grid); err != nil {
		return 0, 0, err
	}
	// Backward: dh = dout @ W_outᵀ, through the activation, dmid = dpre @ W_inᵀ.
	if err := d.gemm(false, true, m, n, c, 1, t.out.p, c, t.mlp.wout.p, c, 0, t.h.p, n); err != nil {
		return 0, 0, err
	}
	actGrad := "gelu_new_grad"
	if t.mlp.act == actReLU {
		actGrad = "relu_grad"
	}
	if err := d.launch(actGrad, d.grid1D(m*n), 256, t.h, t.pre, int64(m*n)); err != nil {
		return 0, 0, err
	}
	if err := d.gemm(false, true, m, c, n, 1, t.h.p, n, t.mlp.win.p, n, 0, t.mid.p, c); err != nil {
		return 0, 0, err
	}
	// Gradients of W_mid (scattered from the active rows) and b_mid.
	if err := t.scatter(acts); err != nil {
		return 0, 0, err
	}
	if err := t.adamw(t.bmid, t.mb, t.vb, t.gb, c, k); err != nil {
		return 0, 0, err
	}
	if err := t.adamw(t.wmid, t.mw, t.vw, t.gw, t.f*c, k); err != nil {
		return 0, 0, err
	}
	var sums [2]float64
	if err := d2h(sums[:], t.sums); err != nil {
		return 0, 0, err
	}
	total := float64(m * c)
	loss, meanY2 := sums[0]/total, sums[1]/total
	return loss, loss / meanY2, nil
}

// scatter sets gw and gb, the gradients of W_mid and b_mid, from t.mid
// (d loss / d mid): with float atomics, or in a fixed order.
func (t *Trainer) scatter(acts *Acts) error {
	d, c := t.d, t.c
	if t.sorted != nil {
		return t.sorted.scatter(d, acts, t.gw, t.gb, t.mid, t.f, c)
	}
	if err := zero(t.gw, t.gw.bytes); err != nil {
		return err
	}
	if err := zero(t.gb, t.gb.bytes); err != nil {
		return err
	}
	return d.launch("scatter_grad", acts.M, 256, t.gw, t.gb, acts.indptr, acts.idx, acts.val, t.mid, c)
}

// scatter is Trainer.scatter in a fixed order (kernels.cu's csc_*): gw's
// rows each summed over the feature's rows in ascending order, gb over
// all rows in order, as midcoder.Trainer sums them on the CPU.
func (s *sortedScatter) scatter(d *Device, acts *Acts, gw, gb, dmid buf, f, c int) error {
	m := acts.M
	g := (m + cscRows - 1) / cscRows
	if m == 0 {
		return fmt.Errorf("cuda: a training step of no rows")
	}
	if acts.NNZ > s.capNNZ {
		n, err := d.regrow(acts.NNZ, &s.rowT, "sorted scatter rows", &s.valT, "sorted scatter values")
		s.capNNZ = n // 0 when the buffers are gone
		if err != nil {
			return err
		}
	}
	if err := zero(s.counts, int64(f*g)*8); err != nil {
		return err
	}
	if err := d.launch("csc_count", g, 256, acts.indptr, acts.idx, s.counts, m, g, cscRows); err != nil {
		return err
	}
	// The starts of all F·G counts: the scan runs over the F features'
	// totals (one block's serial chunks: 24 at F = 24,576, where the F·G
	// counts took 768), each feature's G chunks by one thread.
	if err := d.launch("csc_totals", d.grid1D(f), 256, s.totals, s.counts, f, g); err != nil {
		return err
	}
	if err := d.launch("exclusive_scan", 1, 1024, s.colptr, s.totals, f); err != nil {
		return err
	}
	if err := d.launch("csc_starts", d.grid1D(f), 256, s.starts, s.colptr, s.counts, f, g); err != nil {
		return err
	}
	if err := d.launch("csc_fill", g, 256, acts.indptr, acts.idx, acts.val, s.starts, s.rowT, s.valT, m, g, cscRows); err != nil {
		return err
	}
	if err := d.launch("csc_grad", f, 256, gw, s.starts, s.rowT, s.valT, dmid, g, c); err != nil {
		return err
	}
	return d.launch("col_sum", (c+255)/256, 256, gb, dmid, m, c)
}

func (t *Trainer) adamw(theta, m, v, g buf, n int, s kernels.AdamWStep) error {
	return t.d.launch("adamw", t.d.grid1D(n), 256, theta, m, v, g, n, s.Decay, s.B1, s.B1c, s.B2, s.B2c, s.BC2Sqrt, s.StepSize, s.Eps)
}
