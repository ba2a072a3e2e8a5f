package gpt2

import "github.com/ctxdep/ctxdep/internal/kernels"

// TransformerLens's default weight processing, computed in
// float64 per element and rounded to float32 once, so each processed weight
// is within one float32 rounding of the exact value (TransformerLens, doing
// the same steps in float32, is within a few).

// foldLayerNorm folds a LayerNorm's gain and bias into the matrix that reads
// its output: b[j] += Σ_m w[m,j]·beta[m] (unscaled w); w[m,j] ← w[m,j]·gamma[m];
// then each column of w loses its mean over m.
// w (R, K), b (K), gamma, beta (R).
func foldLayerNorm(w, b, gamma, beta []float32, r, k int) {
	f := newLayerNormFold(b, gamma, beta, k)
	f.rows(w, 0)
	f.apply(w, b, r)
}

// layerNormFold is foldLayerNorm in two steps, so that a matrix can be
// folded as its rows arrive: rows accumulates the column sums of some rows
// (every row once, in order), apply then writes b and w.
type layerNormFold struct {
	bacc, sum   []float64 // (K)
	gamma, beta []float32 // (R)
}

func newLayerNormFold(b, gamma, beta []float32, k int) *layerNormFold {
	f := &layerNormFold{bacc: make([]float64, k), sum: make([]float64, k), gamma: gamma, beta: beta}
	for j := range f.bacc {
		f.bacc[j] = float64(b[j])
	}
	return f
}

// rows accumulates w's rows, rows m0, m0+1, … of the matrix.
func (f *layerNormFold) rows(w []float32, m0 int) {
	k := len(f.bacc)
	bacc, sum := f.bacc, f.sum
	for m := m0; m < m0+len(w)/k; m++ {
		row := w[(m-m0)*k : (m-m0+1)*k]
		g, be := float64(f.gamma[m]), float64(f.beta[m])
		for j, v := range row {
			bacc[j] += float64(v) * be
			sum[j] += float64(v) * g
		}
	}
}

// apply writes the folded b and w (R rows), once every row is accumulated.
func (f *layerNormFold) apply(w, b []float32, r int) {
	k := len(f.bacc)
	sum := f.sum
	for j := range b {
		b[j] = float32(f.bacc[j])
		sum[j] /= float64(r)
	}
	for m := 0; m < r; m++ {
		row := w[m*k : (m+1)*k]
		g := float64(f.gamma[m])
		for j, v := range row {
			row[j] = float32(float64(v)*g - sum[j])
		}
	}
}

// hfWeights are the unprocessed tensors of a checkpoint, by role.
type hfWeights struct {
	wte, wpe   []float32 // (V, C), (NCtx, C)
	lnfW, lnfB []float32 // (C)
	blocks     []hfBlock
}

type hfBlock struct {
	ln1W, ln1B   []float32 // (C)
	attnW, attnB []float32 // (C, 3C), (3C): Q, K, V blocks, head i at i·D
	projW, projB []float32 // (C, C), (C)
	ln2W, ln2B   []float32 // (C)
	fcW, fcB     []float32 // (C, N), (N)
	outW, outB   []float32 // (N, C), (C)
}

// process applies the processing steps in order, reusing the checkpoint's buffers.
func process(cfg Config, hf *hfWeights) *Model {
	c, n, v := cfg.DModel, cfg.DMLP, cfg.DVocab
	m := &Model{Config: cfg, Blocks: make([]Block, cfg.NLayer), Loaded: Parts{Blocks: cfg.NLayer, Unembed: true}}
	// W_U is the transpose of the *unprocessed* wte (tied weights).
	m.WU = kernels.Transpose(hf.wte, v, c)
	m.BU = make([]float32, v)

	// 1. fold_layer_norm.
	for l := range m.Blocks {
		hb := &hf.blocks[l]
		foldLayerNorm(hb.attnW, hb.attnB, hb.ln1W, hb.ln1B, c, 3*c)
		foldLayerNorm(hb.fcW, hb.fcB, hb.ln2W, hb.ln2B, c, n)
	}
	foldLayerNorm(m.WU, m.BU, hf.lnfW, hf.lnfB, c, v)

	// 2. center_writing_weights.
	kernels.CentreRows(hf.wte, v, c)
	kernels.CentreRows(hf.wpe, cfg.NCtx, c)
	for l := range m.Blocks {
		hb := &hf.blocks[l]
		kernels.CentreRows(hb.projW, c, c)
		kernels.CentreRows(hb.projB, 1, c)
		kernels.CentreRows(hb.outW, n, c)
		kernels.CentreRows(hb.outB, 1, c)
	}

	// 3. center_unembed: W_U loses its mean over the vocabulary, b_U too.
	kernels.CentreRows(m.WU, c, v)
	kernels.CentreRows(m.BU, 1, v)

	// 4. fold_value_biases: b_O += b_V @ W_O, then b_V = 0.
	for l := range m.Blocks {
		hb := &hf.blocks[l]
		bv := hb.attnB[2*c : 3*c]
		acc := make([]float64, c)
		for j := range acc {
			acc[j] = float64(hb.projB[j])
		}
		for k, b := range bv {
			row := hb.projW[k*c : (k+1)*c]
			for j, w := range row {
				acc[j] += float64(b) * float64(w)
			}
		}
		for j := range acc {
			hb.projB[j] = float32(acc[j])
		}
		clear(bv)
	}

	m.WE, m.WPos = hf.wte, hf.wpe
	for l := range m.Blocks {
		hb := &hf.blocks[l]
		m.Blocks[l] = Block{
			WQKV: hb.attnW, BQKV: hb.attnB,
			WO: hb.projW, BO: hb.projB,
			WIn: hb.fcW, BIn: hb.fcB,
			WOut: hb.outW, BOut: hb.outB,
		}
	}
	return m
}
