package analysis

import (
	"fmt"
	"math"
	"runtime"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Effect consistency through the MLP.
//
// Row vectors throughout; φ is the MLP's activation (ReLU, or gelu_new).
// For a token t of the cache,
//
//	mid(t)  = acts(t) @ W_mid + b_mid            (C)   the fitted midcoder
//	pre(t)  = mid(t) @ W_in + b_in               (N)   as Report computes it
//	d_f     = W_mid[f] @ W_in                    (N)   f's drive
//	e_t(f)  = (φ'(pre(t)) ⊙ d_f) @ W_out         (C)
//
// e_t(f) is the change of the MLP's output per unit of f's activation at
// t, the MLP linearised at the token's own pre-activation: the drive is
// the same on every token, the gate φ'(pre(t)) is what the context sets.
// Over the tokens T_f = {t : acts_f(t) > 0}:
//
//	effect_consistency_f = ‖Σ_{T_f} e_t(f)‖ / Σ_{T_f} ‖e_t(f)‖
//	cos_effect_dec_f     = cos(Σ_{T_f} e_t(f), W_dec[f])
//	cos_effect_pinv_f    = cos(Σ_{T_f} e_t(f), Σ_{T_f} e^pinv_t(f))
//	mean_effect_norm_f   = Σ_{T_f} ‖e_t(f)‖ / |T_f|
//
// where e^pinv_t(f) = (φ'(pre(t)) ⊙ (W_mid_pinv[f] @ W_in)) @ W_out takes
// the pinv baseline's mid vector as the drive but keeps the gate of the
// fitted midcoder's pre(t): both effects are read through the same
// token-dependent linearisation (the fitted midcoder is the one that
// reproduces the MLP's behaviour on the cache), so the cosine compares
// the two mid vectors as the context actually gates them, not two
// different forward passes. effect_consistency is 1 when f moves the MLP's
// output in one direction on every token (context-independent), lower as
// the direction turns with the context; it is NaN when f never fires or
// every e_t(f) is zero. A cosine is NaN when either vector is zero or
// missing (no W_dec, no pinv). Activations do not weight the tokens: e is
// per unit of activation.
//
// φ' is the derivative of the formula: ReLU's is 1 where pre > 0 and 0
// elsewhere (0 at pre = 0, as torch's backward, and as Report's
// "active" test); gelu_new's is the tanh formula's, in float64
// (kernels.GeluNewBackward).
//
// Cost and memory. Per token the work is k·N·C multiply-adds for its k
// active features: the pairs (t, f) of a batch are taken effectGroup at a
// time, their masked drives φ'(pre(t)) ⊙ d_f stacked into one (pairs × N)
// matrix and multiplied by W_out in one GEMM (kernels.MatMul), for the
// norms ‖e_t(f)‖ and the sums Σ e_t(f). The pinv baseline's effects are
// needed only summed, and the sum is linear in the gate:
//
//	Σ_{T_f} e^pinv_t(f) = (d^pinv_f ⊙ Γ_f) @ W_out,   Γ_f = Σ_{T_f} φ'(pre(t))
//
// so per pair the pinv costs N additions to Γ_f (float64), and Result
// multiplies once, in float64, for the features that fired (an F' × N ×
// C GEMM): half the per-token work of taking e^pinv pair by pair. The
// drives of all features are computed once, at construction (one F × C ×
// N GEMM each). Memory: the drives, F × N float32 (302 MB at GPT-2 small:
// F = 24,576, N = 3,072; as much again for the pinv drives); the sums of
// e, F × C float64 (151 MB); with pinv, Γ, F × N float64 (604 MB), and
// while Result runs the pinv sums and W_out in float64 (170 MB); per
// feature a count and Σ‖e‖; and the group's buffers, effectGroup × (N +
// C) float32 (63 MB) plus the batch's φ' (M × N float32). None of it
// grows with the number of tokens.
//
// The result does not depend on GOMAXPROCS: kernels.MatMul cuts by shape,
// each pair's norm is one goroutine's, each column of the sums and of Γ
// is added by one goroutine in pair order, Σ‖e‖ in pair order, and
// Result's product is cut by features. It does depend on how the tokens
// are cut into batches (the groups), at float32 rounding.

// effectGroup is how many (token, feature) pairs one GEMM takes: enough
// rows for kernels.MatMul to cut the product into parts of 512 rows (at
// 1,024 pairs, in parts of 256, Add was 8–12% slower on the 2-core AMD
// test machine: -bench EffectAdd of test binaries built with each value,
// alternating, 2026-12-02), few enough that the stacked drives stay small.
const effectGroup = 4096

// EffectAccumulator accumulates effect consistency over batches of tokens
// (Add) and gives the per-feature statistics (Result). It is not safe for
// concurrent use; Add itself runs in parallel.
type EffectAccumulator struct {
	c, n, f int
	act     midcoder.Activation
	wOut    []float32 // (N, C)
	wDec    []float32 // (F, C) or nil
	drive   []float32 // (F, N) W_mid_fit @ W_in
	driveP  []float32 // (F, N) W_mid_pinv @ W_in, or nil

	count   []int64   // (F) tokens where f fires
	sum     []float64 // (F, C) Σ e_t(f)
	gate    []float64 // (F, N) Γ_f = Σ φ'(pre(t)) over T_f, with pinv; else nil
	normSum []float64 // (F) Σ ‖e_t(f)‖

	group int // pairs per GEMM (effectGroup; tests lower it)
	part  int // features per GEMM of pinvSums (effectPart; tests lower it)
	dphi  []float32
	rows  []int32 // the group's pairs: batch row
	feats []int32 // and feature
	a, e  []float32
	norms []float64
}

// EffectResult holds the per-feature statistics, each of length F; NaN
// where undefined (see the definitions above).
type EffectResult struct {
	Count             []int64
	EffectConsistency []float64
	CosEffectDec      []float64
	CosEffectPinv     []float64
	MeanEffectNorm    []float64
}

// NewEffectAccumulator returns an accumulator for the MLP mlp (W_in, b_in
// are used through the caller's pre-activations, W_out here, and mlp.Act
// picks φ), the fitted midcoder fit, and optionally the pinv baseline pinv
// and the transcoder's decoder wDec (F × C); nil leaves their cosines NaN.
// It computes the drives of all features (an F × C × N GEMM).
func NewEffectAccumulator(mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec []float32) (*EffectAccumulator, error) {
	if mlp == nil || fit == nil {
		return nil, fmt.Errorf("effect: the MLP and the fitted midcoder are required")
	}
	c, n, f := mlp.C, mlp.N, fit.F
	switch {
	case c <= 0 || n <= 0 || f <= 0:
		return nil, fmt.Errorf("effect: empty shapes (d_model %d, d_mlp %d, %d features)", c, n, f)
	case len(mlp.WIn) != c*n || len(mlp.WOut) != n*c:
		return nil, fmt.Errorf("effect: the MLP's W_in has %d values and W_out %d, want %d × %d", len(mlp.WIn), len(mlp.WOut), c, n)
	case fit.C != c || len(fit.WMid) != f*c:
		return nil, fmt.Errorf("effect: the midcoder is %d × %d (%d values), the MLP's d_model %d", fit.F, fit.C, len(fit.WMid), c)
	case pinv != nil && (pinv.F != f || pinv.C != c || len(pinv.WMid) != f*c):
		return nil, fmt.Errorf("effect: the pinv midcoder is %d × %d, the fitted one %d × %d", pinv.F, pinv.C, f, c)
	case wDec != nil && len(wDec) != f*c:
		return nil, fmt.Errorf("effect: W_dec has %d values, want %d × %d", len(wDec), f, c)
	case mlp.Act != midcoder.ReLU && mlp.Act != midcoder.GeluNew:
		return nil, fmt.Errorf("effect: unknown activation %v", mlp.Act)
	}
	ea := &EffectAccumulator{c: c, n: n, f: f, act: mlp.Act, wOut: mlp.WOut, wDec: wDec,
		drive: make([]float32, f*n), count: make([]int64, f), sum: make([]float64, f*c),
		normSum: make([]float64, f), group: effectGroup, part: effectPart}
	kernels.MatMul(ea.drive, fit.WMid, mlp.WIn, f, c, n, false)
	if pinv != nil {
		ea.driveP = make([]float32, f*n)
		kernels.MatMul(ea.driveP, pinv.WMid, mlp.WIn, f, c, n, false)
		ea.gate = make([]float64, f*n)
	}
	return ea, nil
}

// Add accumulates one batch: acts its sparse activations (M rows) and pre
// the fitted midcoder's pre-activations mid @ W_in + b_in (M × N), as
// midcoder.Model.PreActivations returns them.
func (ea *EffectAccumulator) Add(acts *transcoder.Acts, pre []float32) {
	m, n := acts.Rows(), ea.n
	if len(pre) != m*n {
		panic(fmt.Sprintf("effect: %d pre-activations for %d rows of %d neurons", len(pre), m, n))
	}
	if cap(ea.dphi) < m*n {
		ea.dphi = make([]float32, m*n)
	}
	dphi := ea.dphi[:m*n]
	actDeriv(dphi, pre, ea.act)
	for r := 0; r < m; r++ {
		idx, val := acts.Row(r)
		for i, fi := range idx {
			if !(val[i] > 0) {
				continue
			}
			if int(fi) < 0 || int(fi) >= ea.f {
				panic(fmt.Sprintf("effect: feature %d of %d", fi, ea.f))
			}
			ea.rows = append(ea.rows, int32(r))
			ea.feats = append(ea.feats, fi)
			if len(ea.rows) == ea.group {
				ea.flush(dphi)
			}
		}
	}
	ea.flush(dphi)
}

// flush computes e for the pending pairs by one GEMM and adds them to the
// sums, and their gates to Γ.
func (ea *EffectAccumulator) flush(dphi []float32) {
	p, n, c := len(ea.rows), ea.n, ea.c
	if p == 0 {
		return
	}
	if cap(ea.a) < p*n {
		ea.a, ea.e = make([]float32, max(ea.group, p)*n), make([]float32, max(ea.group, p)*c)
		ea.norms = make([]float64, max(ea.group, p))
	}
	a, e, norms := ea.a[:p*n], ea.e[:p*c], ea.norms[:p]
	// The masked drives: row i = φ'(pre(t_i)) ⊙ d_{f_i}.
	par.For(p, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			fi := int(ea.feats[i])
			mulInto(a[i*n:(i+1)*n], ea.gateOf(dphi, i), ea.drive[fi*n:(fi+1)*n])
		}
	})
	kernels.MatMul(e, a, ea.wOut, p, n, c, false)
	par.For(p, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			norms[i] = norm64(e[i*c : (i+1)*c])
		}
	})
	// The sums: each worker owns a range of columns and adds the pairs in
	// order, so the result does not depend on the number of workers.
	par.For(c, func(lo, hi int) {
		for i, fi := range ea.feats {
			s := ea.sum[int(fi)*c : int(fi+1)*c]
			for j, v := range e[i*c+lo : i*c+hi] {
				s[lo+j] += float64(v)
			}
		}
	})
	if ea.gate != nil {
		par.For(n, func(lo, hi int) {
			for i, fi := range ea.feats {
				s := ea.gate[int(fi)*n : int(fi+1)*n]
				for j, v := range ea.gateOf(dphi, i)[lo:hi] {
					s[lo+j] += float64(v)
				}
			}
		})
	}
	for i, fi := range ea.feats {
		ea.count[fi]++
		ea.normSum[fi] += norms[i]
	}
	ea.rows, ea.feats = ea.rows[:0], ea.feats[:0]
}

// gateOf returns φ'(pre) of pending pair i's token.
func (ea *EffectAccumulator) gateOf(dphi []float32, i int) []float32 {
	r := int(ea.rows[i])
	return dphi[r*ea.n : (r+1)*ea.n]
}

// pinvSums returns Σ e^pinv_t(f) (F × C) = (d^pinv_f ⊙ Γ_f) @ W_out for
// the features that fired, in float64, parts of ea.part features at a
// time (the cut follows the features alone).
func (ea *EffectAccumulator) pinvSums() []float64 {
	f, n, c := ea.f, ea.n, ea.c
	sumP := make([]float64, f*c)
	var fired []int
	for fi, k := range ea.count {
		if k > 0 {
			fired = append(fired, fi)
		}
	}
	wOut := dtype.Float64s(ea.wOut)
	parts := (len(fired) + ea.part - 1) / ea.part
	workers := min(runtime.GOMAXPROCS(0), parts)
	scratch := make([]struct{ v, out []float64 }, workers) // per worker: a part's gated drives and sums
	par.Jobs(parts, workers, func(w, q int) {
		fs := fired[q*ea.part : min((q+1)*ea.part, len(fired))]
		sc := &scratch[w]
		if sc.v == nil {
			sc.v, sc.out = make([]float64, ea.part*n), make([]float64, ea.part*c)
		}
		v, out := sc.v[:len(fs)*n], sc.out[:len(fs)*c]
		for i, fi := range fs {
			d, g := ea.driveP[fi*n:(fi+1)*n], ea.gate[fi*n:(fi+1)*n]
			for j := range v[i*n : (i+1)*n] {
				v[i*n+j] = float64(d[j]) * g[j]
			}
		}
		gemm64(out, v, wOut, len(fs), n, c)
		for i, fi := range fs {
			copy(sumP[fi*c:(fi+1)*c], out[i*c:(i+1)*c])
		}
	})
	return sumP
}

// effectPart is how many features one of pinvSums' GEMMs takes.
const effectPart = 256

// mulInto sets dst = a ⊙ b.
func mulInto(dst, a, b []float32) {
	b = b[:len(dst)]
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

// actDeriv sets dst to φ'(pre) elementwise: ReLU's 1 where pre > 0, else
// 0; gelu_new's derivative of the formula (kernels.GeluNewBackward on
// ones).
func actDeriv(dst, pre []float32, act midcoder.Activation) {
	switch act {
	case midcoder.ReLU:
		par.Chunks(len(pre), 4096, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = 0
				if pre[i] > 0 {
					dst[i] = 1
				}
			}
		})
	case midcoder.GeluNew:
		par.Chunks(len(pre), 4096, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = 1
			}
		})
		kernels.GeluNewBackward(dst, pre)
	default:
		panic(fmt.Sprintf("effect: unknown activation %v", act))
	}
}

// Result returns the statistics of the tokens added so far.
func (ea *EffectAccumulator) Result() *EffectResult {
	var sumP []float64
	if ea.gate != nil {
		sumP = ea.pinvSums()
	}
	return EffectResultOf(ea.count, ea.sum, sumP, ea.normSum, ea.wDec, ea.c)
}

// EffectResultOf computes the per-feature statistics from the sums an
// accumulator keeps (on the CPU or a GPU): count (F) the firings, sum (F ×
// C) Σ e_t(f), sumP (F × C, or nil) Σ e^pinv_t(f), normSum (F) Σ ‖e_t(f)‖,
// and wDec (F × C, or nil) the decoder for cos_effect_dec.
func EffectResultOf(count []int64, sum, sumP, normSum []float64, wDec []float32, c int) *EffectResult {
	f := len(count)
	r := &EffectResult{Count: append([]int64(nil), count...),
		EffectConsistency: make([]float64, f), CosEffectDec: make([]float64, f),
		CosEffectPinv: make([]float64, f), MeanEffectNorm: make([]float64, f)}
	nan := math.NaN()
	for fi := 0; fi < f; fi++ {
		r.EffectConsistency[fi], r.CosEffectDec[fi], r.CosEffectPinv[fi], r.MeanEffectNorm[fi] = nan, nan, nan, nan
		if count[fi] == 0 {
			continue
		}
		s := sum[fi*c : (fi+1)*c]
		r.MeanEffectNorm[fi] = normSum[fi] / float64(count[fi])
		if normSum[fi] > 0 {
			// ≤ 1 by the triangle inequality; min drops float64 rounding above it.
			r.EffectConsistency[fi] = min(1, math.Sqrt(dot64(s, s))/normSum[fi])
		}
		if wDec != nil {
			d := wDec[fi*c : (fi+1)*c]
			var sd, dd float64
			for j, v := range d {
				sd += s[j] * float64(v)
				dd += float64(v) * float64(v)
			}
			r.CosEffectDec[fi] = cosine(sd, dot64(s, s), dd)
		}
		if sumP != nil {
			sp := sumP[fi*c : (fi+1)*c]
			r.CosEffectPinv[fi] = cosine(dot64(s, sp), dot64(s, s), dot64(sp, sp))
		}
	}
	return r
}

// An EffectPass accumulates the effect statistics batch by batch: Add as
// EffectAccumulator.Add, Result once at the end. NewCPUEffect is the CPU's;
// a GPU's is internal/cuda's EffectAccumulator behind cmd/ctxdep's backend.
type EffectPass interface {
	Add(acts *transcoder.Acts, pre []float32) error
	Result() (*EffectResult, error)
	Close()
}

// NewEffect makes an EffectPass for NewEffectAccumulator's arguments.
type NewEffect func(mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec []float32) (EffectPass, error)

// NewCPUEffect is NewEffect on the CPU: an EffectAccumulator.
func NewCPUEffect(mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec []float32) (EffectPass, error) {
	ea, err := NewEffectAccumulator(mlp, fit, pinv, wDec)
	if err != nil {
		return nil, err
	}
	return cpuEffect{ea}, nil
}

type cpuEffect struct{ *EffectAccumulator }

func (e cpuEffect) Add(acts *transcoder.Acts, pre []float32) error {
	e.EffectAccumulator.Add(acts, pre)
	return nil
}

func (e cpuEffect) Result() (*EffectResult, error) { return e.EffectAccumulator.Result(), nil }

func (cpuEffect) Close() {}

func dot64(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// cosine returns ab / √(aa·bb) within [−1, 1], NaN when either vector is
// zero.
func cosine(ab, aa, bb float64) float64 {
	if !(aa > 0 && bb > 0) {
		return math.NaN()
	}
	return max(-1, min(1, ab/(math.Sqrt(aa)*math.Sqrt(bb))))
}
