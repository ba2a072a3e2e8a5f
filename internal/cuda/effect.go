//go:build cuda || cudasim

package cuda

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// EffectAccumulator is analysis.EffectAccumulator's work on the device:
// per batch the pre-activations go up, φ' is taken on the device, and the
// (token, feature) pairs, sorted by feature on the host, are taken
// effectGroup at a time: their masked drives φ'(pre(t)) ⊙ d_f stacked,
// multiplied by W_out in one GEMM, and each pair's effect added to its
// feature's float64 sums in row order (one block per feature's run of
// pairs: no atomics, the CPU's order of additions). With the pinv
// baseline each pair's gate φ'(pre(t)) is added to Γ_f (float64, the same
// order), and Sums multiplies (d^pinv_f ⊙ Γ_f) @ W_out once, in float64,
// as the CPU's Result does. The drives (F × N, twice with pinv), the sums
// (F × C float64) and Γ (F × N float64) stay on the device; Sums copies
// the sums back.
type EffectAccumulator struct {
	d       *Device
	c, n, f int
	act     int
	maxRows int
	group   int // effectGroup when made
	pinv    bool

	wout, drive, driveP buf
	sum, sumP, normSum  buf // float64
	gate, wout64, v     buf // float64, with pinv: Γ, W_out, a part's gated drives
	pre, dphi           buf // (maxRows, N)
	rows, feats, seg    buf // int32: a group's pairs and its segments' starts
	a, e                buf // (effectGroup, N), (effectGroup, C)
	all                 allocList

	count               []int64 // per feature, on the host
	order               []int32 // the batch's pairs, sorted by feature: entry index
	rowOf               []int32 // each entry's row
	hRows, hFeats, hSeg []int32
	start               []int32 // counting sort: per feature
}

// effectPart is how many features one float64 GEMM of Sums takes.
const effectPart = 2048

// effectGroup is how many pairs one GEMM of the device's accumulator
// takes (its stacked drives: 8,192 × 3,072 float32 = 100 MB at GPT-2
// small); a variable for the test that splits features across groups.
var effectGroup = 8192

// NewEffectAccumulator uploads W_out and computes the drives W_mid @ W_in
// of fit (and pinv, when not nil) on the device, for batches of up to
// maxRows tokens.
func (d *Device) NewEffectAccumulator(mlp *midcoder.MLP, fit, pinv *midcoder.Params, maxRows int) (*EffectAccumulator, error) {
	c, n, f := mlp.C, mlp.N, fit.F
	if fit.C != c || (pinv != nil && (pinv.F != f || pinv.C != c)) {
		return nil, fmt.Errorf("cuda: effect: midcoders %d × %d and the MLP's d_model %d do not fit", f, fit.C, c)
	}
	defer d.enter()()
	ea := &EffectAccumulator{d: d, c: c, n: n, f: f, act: actOf(mlp.Act), maxRows: maxRows, pinv: pinv != nil, all: allocList{d: d},
		group: effectGroup, count: make([]int64, f), start: make([]int32, f+1)}
	a := &ea.all
	a.upload(&ea.wout, "W_out", mlp.WOut)
	a.add(&ea.drive, "drives W_mid @ W_in", f*n, 4)
	a.add(&ea.sum, "Σ e", f*c, 8)
	a.add(&ea.normSum, "Σ ‖e‖", f, 8)
	if ea.pinv {
		a.add(&ea.driveP, "pinv drives", f*n, 4)
		a.add(&ea.gate, "Γ, the summed gates", f*n, 8)
		a.add(&ea.sumP, "Σ e pinv", f*c, 8)
		a.add(&ea.wout64, "W_out in float64", n*c, 8)
		a.add(&ea.v, "gated drives", min(f, effectPart)*n, 8)
	}
	a.add(&ea.pre, "pre-activations", maxRows*n, 4)
	a.add(&ea.dphi, "φ'(pre)", maxRows*n, 4)
	a.add(&ea.rows, "pair rows", ea.group, 4)
	a.add(&ea.feats, "pair features", ea.group, 4)
	a.add(&ea.seg, "pair segments", ea.group+1, 4)
	a.add(&ea.a, "masked drives", ea.group*n, 4)
	a.add(&ea.e, "effects", ea.group*c, 4)
	if err := a.done(); err != nil {
		return nil, err
	}
	if ea.pinv {
		if err := h2d(ea.wout64, dtype.Float64s(mlp.WOut)); err != nil {
			ea.all.freeAll()
			return nil, err
		}
	}
	// W_in and W_mid are needed for the drives only.
	tmp := allocList{d: d}
	var win, wmid buf
	tmp.upload(&win, "W_in", mlp.WIn)
	tmp.add(&wmid, "W_mid", f*c, 4)
	err := tmp.done()
	if err == nil {
		err = ea.drives(wmid, win, fit, ea.drive)
	}
	if err == nil && ea.pinv {
		err = ea.drives(wmid, win, pinv, ea.driveP)
	}
	for _, b := range []buf{ea.sum, ea.gate, ea.normSum} {
		if err == nil && b.p != 0 {
			err = zero(b, b.bytes)
		}
	}
	tmp.freeAll()
	if err != nil {
		ea.all.freeAll()
		return nil, err
	}
	return ea, nil
}

// drives sets dst (F, N) = p.WMid @ W_in, staging W_mid through wmid.
func (ea *EffectAccumulator) drives(wmid, win buf, p *midcoder.Params, dst buf) error {
	if err := h2d(wmid, p.WMid); err != nil {
		return err
	}
	return ea.d.gemm(false, false, ea.f, ea.n, ea.c, 1, wmid.p, ea.c, win.p, ea.n, 0, dst.p, ea.n)
}

// Close releases the device memory.
func (ea *EffectAccumulator) Close() {
	defer ea.d.enter()()
	ea.all.freeAll()
}

// Add accumulates one batch: acts (M rows) and the fitted midcoder's
// pre-activations pre (M × N), as analysis.EffectAccumulator.Add.
func (ea *EffectAccumulator) Add(acts *transcoder.Acts, pre []float32) error {
	m, n := acts.Rows(), ea.n
	if len(pre) != m*n {
		return fmt.Errorf("cuda: effect: %d pre-activations for %d rows of %d neurons", len(pre), m, n)
	}
	ea.sortPairs(acts)
	defer ea.d.enter()()
	d := ea.d
	if m > ea.maxRows {
		if _, err := d.regrow(m*n, &ea.pre, "pre-activations", &ea.dphi, "φ'(pre)"); err != nil {
			return err
		}
		ea.maxRows = m
	}
	if err := h2d(ea.pre, pre); err != nil {
		return err
	}
	if err := d.launch("act_deriv", d.grid1D(m*n), 256, ea.dphi, ea.pre, int64(m*n), ea.act); err != nil {
		return err
	}
	for lo := 0; lo < len(ea.order); lo += ea.group {
		if err := ea.runGroup(lo, min(lo+ea.group, len(ea.order)), acts); err != nil {
			return err
		}
	}
	return nil
}

// sortPairs lists the batch's pairs (entries with a positive value) by
// feature, rows ascending within each (a stable counting sort), and
// counts them.
func (ea *EffectAccumulator) sortPairs(acts *transcoder.Acts) {
	clear(ea.start)
	for k, fi := range acts.Indices {
		if acts.Values[k] > 0 {
			ea.start[fi+1]++
		}
	}
	for fi := 0; fi < ea.f; fi++ {
		ea.count[fi] += int64(ea.start[fi+1])
		ea.start[fi+1] += ea.start[fi]
	}
	ea.order = resize(ea.order, int(ea.start[ea.f]))
	ea.rowOf = resize(ea.rowOf, len(acts.Indices))
	for r := 0; r < acts.Rows(); r++ {
		for k := acts.Indptr[r]; k < acts.Indptr[r+1]; k++ {
			ea.rowOf[k] = int32(r)
		}
	}
	for k, fi := range acts.Indices {
		if acts.Values[k] > 0 {
			ea.order[ea.start[fi]] = int32(k)
			ea.start[fi]++
		}
	}
}

// runGroup runs the pairs order[lo:hi]: masked drives, one GEMM, the sums.
func (ea *EffectAccumulator) runGroup(lo, hi int, acts *transcoder.Acts) error {
	d, n, c, p := ea.d, ea.n, ea.c, hi-lo
	ea.hRows, ea.hFeats, ea.hSeg = resize(ea.hRows, p), resize(ea.hFeats, p), ea.hSeg[:0]
	for i, k := range ea.order[lo:hi] {
		ea.hRows[i], ea.hFeats[i] = ea.rowOf[k], acts.Indices[k]
		if i == 0 || ea.hFeats[i] != ea.hFeats[i-1] {
			ea.hSeg = append(ea.hSeg, int32(i))
		}
	}
	ea.hSeg = append(ea.hSeg, int32(p))
	for _, c := range []struct {
		dst buf
		src []int32
	}{{ea.rows, ea.hRows}, {ea.feats, ea.hFeats}, {ea.seg, ea.hSeg}} {
		if err := h2d(c.dst, c.src); err != nil {
			return err
		}
	}
	segs := len(ea.hSeg) - 1
	if err := d.launch("masked_drive", p, 256, ea.a, ea.dphi, ea.drive, ea.rows, ea.feats, n); err != nil {
		return err
	}
	if err := d.gemm(false, false, p, c, n, 1, ea.a.p, n, ea.wout.p, c, 0, ea.e.p, c); err != nil {
		return err
	}
	if err := d.launch("effect_sums", segs, 256, ea.sum, ea.normSum, ea.e, ea.feats, ea.seg, c); err != nil {
		return err
	}
	if ea.pinv {
		return d.launch("gate_sums", segs, 256, ea.gate, ea.dphi, ea.rows, ea.feats, ea.seg, n)
	}
	return nil
}

// Sums returns what analysis.EffectResultOf takes: the firings per
// feature, Σ e (F × C), Σ e^pinv (nil without pinv) and Σ ‖e‖ (F).
func (ea *EffectAccumulator) Sums() (count []int64, sum, sumP, normSum []float64, err error) {
	defer ea.d.enter()()
	sum, normSum = make([]float64, ea.f*ea.c), make([]float64, ea.f)
	if err := d2h(sum, ea.sum); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := d2h(normSum, ea.normSum); err != nil {
		return nil, nil, nil, nil, err
	}
	if ea.pinv {
		// Σ e^pinv = (d^pinv ⊙ Γ) @ W_out, effectPart features at a time.
		d, n, c := ea.d, ea.n, ea.c
		for lo := 0; lo < ea.f; lo += effectPart {
			k := min(effectPart, ea.f-lo)
			if err := d.launch("gated_drive", d.grid1D(k*n), 256, ea.v, ea.driveP.at(lo*n), ea.gate.p+devPtr(8*lo*n), int64(k*n)); err != nil {
				return nil, nil, nil, nil, err
			}
			if err := d.gemm64(false, false, k, c, n, 1, ea.v.p, n, ea.wout64.p, c, 0, ea.sumP.p+devPtr(8*lo*c), c); err != nil {
				return nil, nil, nil, nil, err
			}
		}
		sumP = make([]float64, ea.f*ea.c)
		if err := d2h(sumP, ea.sumP); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	return append([]int64(nil), ea.count...), sum, sumP, normSum, nil
}
