//go:build cuda || cudasim

package cuda

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// evalTokens is how many cached tokens one device evaluation batch takes
// (whole sequences, at least one): 32 rows of 128, whose logits are 0.8 GB
// at GPT-2's vocabulary.
const evalTokens = 4096

// evalRows is the sequences of t tokens in one batch.
func evalRows(t int) int { return max(1, evalTokens/t) }

// Evaluator is analysis.Evaluate's pass on the device
// (analysis.EvalPass): per batch, the model runs to block L once, x is
// encoded, y and resid_mid stay on the device, and each variant of y
// (clean, the transcoder's reconstruction, zero ablation, each midcoder's
// output) goes through blocks L+1.. and the unembedding. Per variant only
// the per-position cross-entropies (and two float64 sums) come back.
type Evaluator struct {
	devicePass     // the model: every block, and the unembedding
	layer          int
	rows           int // sequences per batch
	wdec           buf // the transcoder's decoder (F, C) and b_dec_out
	bdec           buf
	mids           []evalMidcoder
	y              buf // (B·T, C): y of block L
	residMid       buf // (B·T, C): resid_mid of block L
	repl           buf // (B·T, C): the variant's replacement of y
	mid            buf // (B·T, C): a midcoder's mid
	pre, h         buf // (B·T, N): a midcoder's MLP
	ce             buf // (B·T) float32
	partials, sums buf
	hostCE         []float32
	all            allocList
}

type evalMidcoder struct {
	wmid, bmid buf
	mlp        devMLP
}

// NewEvaluator uploads m (every block and the unembedding), tc's encoder
// and decoder, and each midcoder (params[i] with mlps[i]), for batches of
// of rows of t tokens (evalTokens at most, or one row) spliced at block
// layer.
func (d *Device) NewEvaluator(m *gpt2.Model, layer int, tc *transcoder.Transcoder, params []*midcoder.Params, mlps []*midcoder.MLP, t int) (*Evaluator, error) {
	if len(params) != len(mlps) {
		return nil, fmt.Errorf("cuda: %d midcoders with %d MLPs", len(params), len(mlps))
	}
	if layer < 0 || layer >= m.NLayer || tc.DIn != m.DModel || tc.DOut != m.DModel {
		return nil, fmt.Errorf("cuda: evaluating at block %d of %d with a transcoder %d → %d on d_model %d", layer, m.NLayer, tc.DIn, tc.DOut, m.DModel)
	}
	rows := evalRows(t) * t
	e := &Evaluator{devicePass: devicePass{d: d, c: m.DModel}, layer: layer, rows: evalRows(t), hostCE: make([]float32, rows)}
	var err error
	if e.m, err = d.LoadModel(m, m.NLayer-1, rows, t); err != nil {
		return nil, err
	}
	if err := e.m.loadUnembed(m); err != nil {
		e.Close()
		return nil, err
	}
	if e.enc, err = d.LoadEncoder(tc, rows); err != nil {
		e.Close()
		return nil, err
	}
	if e.acts, err = d.NewActs(rows, startL0); err != nil {
		e.Close()
		return nil, err
	}
	defer d.enter()()
	e.all = allocList{d: d}
	a := &e.all
	a.upload(&e.wdec, "W_dec", tc.WDec)
	a.upload(&e.bdec, "b_dec_out", tc.BDecOut)
	e.mids = make([]evalMidcoder, len(params))
	n := m.DMLP
	for i, p := range params {
		if p.C != m.DModel || p.F != tc.DSAE || mlps[i].C != m.DModel {
			e.Close()
			return nil, fmt.Errorf("cuda: midcoder %d is %d × %d, the transcoder has %d features of d_model %d", i, p.F, p.C, tc.DSAE, m.DModel)
		}
		mc := &e.mids[i]
		a.upload(&mc.wmid, "W_mid", p.WMid)
		a.upload(&mc.bmid, "b_mid", p.BMid)
		a.uploadMLP(&mc.mlp, mlps[i])
		n = max(n, mlps[i].N)
	}
	a.add(&e.y, "y", rows*e.c, 4)
	a.add(&e.residMid, "resid_mid", rows*e.c, 4)
	a.add(&e.repl, "replacement of y", rows*e.c, 4)
	a.add(&e.mid, "mid", rows*e.c, 4)
	a.add(&e.pre, "midcoder pre-activations", rows*n, 4)
	a.add(&e.h, "midcoder activations", rows*n, 4)
	a.add(&e.ce, "cross-entropy", rows, 4)
	a.add(&e.partials, "squared-error partial sums", 2*d.grid1D(rows*e.c), 8)
	a.add(&e.sums, "squared-error sums", 2, 8)
	if err := a.done(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Rows implements analysis.EvalPass.
func (e *Evaluator) Rows() int { return e.rows }

// Close releases the device memory.
func (e *Evaluator) Close() {
	e.free()
	if len(e.all.bufs) > 0 {
		defer e.d.enter()()
		e.all.freeAll()
	}
}

// Batch implements analysis.EvalPass: variants in its order, each
// position's cross-entropy summed on the host in the CPU pass's order.
func (e *Evaluator) Batch(tokens []int32, b, t int, ce, se []float64, y2 *float64) error {
	if len(ce) != 3+len(e.mids) || len(se) != 1+len(e.mids) {
		return fmt.Errorf("cuda: %d CE and %d error sums for %d midcoders", len(ce), len(se), len(e.mids))
	}
	defer e.d.enter()()
	d, m := e.d, b*t
	n := m * e.c
	if err := e.m.runTo(tokens, b, t, e.layer, nil); err != nil {
		return err
	}
	// After block L: xn holds x, tmp holds y, resid holds resid_mid.
	if err := d2d(e.y, e.m.tmp, int64(n)*4); err != nil {
		return err
	}
	if err := d2d(e.residMid, e.m.resid, int64(n)*4); err != nil {
		return err
	}
	if err := e.enc.encode(e.acts, e.m.xn, m); err != nil {
		return err
	}
	for v := range ce {
		src := e.repl
		switch {
		case v == 0: // clean
			src = e.y
		case v == 1: // the transcoder's reconstruction
			if err := d.launch("decode_rows", m, 256, e.repl, e.acts.indptr, e.acts.idx, e.acts.val, e.wdec, e.bdec, e.c); err != nil {
				return err
			}
		case v == 2: // zero ablation
			if err := zero(e.repl, int64(n)*4); err != nil {
				return err
			}
		default:
			mc := &e.mids[v-3]
			if err := d.launch("gather_mid", m, 256, e.mid, e.acts.indptr, e.acts.idx, e.acts.val, mc.wmid, mc.bmid, e.c); err != nil {
				return err
			}
			if err := d.mlpForward(&mc.mlp, e.repl, e.h, e.pre, e.mid, m); err != nil {
				return err
			}
		}
		if v == 1 || v >= 3 { // a reconstruction: se[0] the transcoder's, se[1+k] midcoder k's
			s, sy, err := e.sqErr(n)
			if err != nil {
				return err
			}
			if v == 1 {
				se[0] += s
				*y2 += sy
			} else {
				se[v-2] += s
			}
		}
		if err := d.launch("add_out", d.grid1D(n), 256, e.m.resid, e.residMid, src, n); err != nil {
			return err
		}
		if err := e.m.continueFrom(b, t, e.layer+1); err != nil {
			return err
		}
		if err := e.m.unembedLoss(e.ce, b, t); err != nil {
			return err
		}
		losses := e.hostCE[:m]
		if err := d2h(losses, e.ce); err != nil {
			return err
		}
		for _, l := range losses { // cross_entropy leaves 0 at each row's last position
			ce[v] += float64(l)
		}
	}
	return nil
}

// sqErr returns Σ (repl − y)² and Σ y² over the first n elements.
func (e *Evaluator) sqErr(n int) (se, sy float64, err error) {
	d := e.d
	grid := d.grid1D(n)
	if err := d.launch("sq_err", grid, 256, e.repl, e.y, n, e.partials); err != nil {
		return 0, 0, err
	}
	if err := d.launch("sum_pairs", 1, 1024, e.sums, e.partials, grid); err != nil {
		return 0, 0, err
	}
	var s [2]float64
	if err := d2h(s[:], e.sums); err != nil {
		return 0, 0, err
	}
	return s[0], s[1], nil
}
