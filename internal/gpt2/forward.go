package gpt2

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/par"
)

// Hooks lets a caller watch or change values during a forward pass. Both
// fields are optional.
type Hooks struct {
	// Observe is called with the value of each TransformerLens hook as it
	// is computed: "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized",
	// "hook_mlp_out" and "hook_resid_post" of each block, as (B·T, C). The
	// slice is only valid during the call and must not be changed.
	Observe func(hook string, layer int, value []float32)
	// Splice, when set, is called at block SpliceLayer with x =
	// ln2.hook_normalized and mlpOut = hook_mlp_out, both (B·T, C); it
	// may overwrite mlpOut, which then flows on into the residual stream, as
	// a TransformerLens forward hook on blocks.L.hook_mlp_out does.
	SpliceLayer int
	Splice      func(x, mlpOut []float32)
}

// logitRows is how many rows of logits the full forward computes at a
// time: (256, 50257) float32 is 51 MB.
const logitRows = 256

// Workspace holds the buffers of forward passes of up to maxTokens tokens,
// reused from call to call. A Workspace is not safe for concurrent use.
type Workspace struct {
	m         *Model
	maxTokens int
	resid     []float32 // (B·T, C) residual stream
	xn        []float32 // (B·T, C) LayerNorm output
	qkv       []float32 // (B·T, 3C)
	z         []float32 // (B·T, C) attention heads' output
	tmp       []float32 // (B·T, C) attn_out, then mlp_out
	hidden    []float32 // (B·T, N)
	scratch   []float32 // attention scores, kernels.ScratchSize(T) per worker
	logits    []float32 // (logitRows, V)
	ce        []float32 // (B·T) per-token losses
	target    []int32   // (logitRows)
	rows      []int     // (logitRows) token rows being unembedded
}

// attentionWorkers is how many attention heads run at once.
const attentionWorkers = 4

// NewWorkspace allocates buffers for passes of up to maxTokens = B·T tokens.
func (m *Model) NewWorkspace(maxTokens int) *Workspace {
	c := m.DModel
	return &Workspace{
		m: m, maxTokens: maxTokens,
		resid: make([]float32, maxTokens*c), xn: make([]float32, maxTokens*c),
		qkv: make([]float32, maxTokens*3*c), z: make([]float32, maxTokens*c),
		tmp: make([]float32, maxTokens*c), hidden: make([]float32, maxTokens*m.DMLP),
	}
}

// CheckTokens reports whether tokens (B·T) can be run: T within the
// context, every id within the vocabulary.
func (m *Model) CheckTokens(tokens []int32, b, t int) error {
	if t <= 0 || b <= 0 || len(tokens) != b*t {
		return fmt.Errorf("gpt2: %d tokens do not form %d sequences of %d", len(tokens), b, t)
	}
	if t > m.NCtx {
		return fmt.Errorf("gpt2: sequences of %d tokens are longer than the model's context of %d", t, m.NCtx)
	}
	for i, id := range tokens {
		if id < 0 || int(id) >= m.DVocab {
			return fmt.Errorf("gpt2: token id %d (sequence %d, position %d) is outside the vocabulary [0, %d)", id, i/t, i%t, m.DVocab)
		}
	}
	return nil
}

// RunToBlock runs tokens (B·T) through blocks 0..layer and returns
// x = blocks.layer.ln2.hook_normalized and y = blocks.layer.hook_mlp_out,
// both (B·T, C) views into ws, valid until its next use.
func (m *Model) RunToBlock(ws *Workspace, tokens []int32, b, t, layer int, hooks *Hooks) (x, y []float32, err error) {
	if layer < 0 || layer >= m.NLayer {
		return nil, nil, fmt.Errorf("gpt2: layer %d is out of range [0, %d)", layer, m.NLayer)
	}
	if err := m.checkParts(Through(layer), "RunToBlock"); err != nil {
		return nil, nil, err
	}
	if err := m.run(ws, tokens, b, t, layer, hooks); err != nil {
		return nil, nil, err
	}
	n := b * t * m.DModel
	return ws.xn[:n], ws.tmp[:n], nil
}

// Loss runs the whole model on tokens (B·T) and returns the next-token
// cross-entropy (nats) of every position that has a next token, as
// (B, T−1), a view into ws valid until its next use. Its mean is
// TransformerLens's return_type="loss".
func (m *Model) Loss(ws *Workspace, tokens []int32, b, t int, hooks *Hooks) ([]float32, error) {
	if hooks != nil && hooks.Splice != nil && (hooks.SpliceLayer < 0 || hooks.SpliceLayer >= m.NLayer) {
		return nil, fmt.Errorf("gpt2: splice layer %d is out of range [0, %d)", hooks.SpliceLayer, m.NLayer)
	}
	if t < 2 {
		return nil, fmt.Errorf("gpt2: sequences of %d token have no next-token targets", t)
	}
	if err := m.checkParts(All(), "Loss"); err != nil {
		return nil, err
	}
	if err := m.run(ws, tokens, b, t, m.NLayer-1, hooks); err != nil {
		return nil, err
	}
	return m.unembedLoss(ws, tokens, b, t), nil
}

// LossFrom continues a forward pass from resid (B·T, C), the residual
// stream after block layer (blocks.layer.hook_resid_post), through the
// remaining blocks and the unembedding, and returns the cross-entropy as
// Loss does. Evaluating several replacements of one block's output this
// way runs the blocks before it once.
func (m *Model) LossFrom(ws *Workspace, tokens []int32, b, t, layer int, resid []float32) ([]float32, error) {
	if layer < 0 || layer >= m.NLayer {
		return nil, fmt.Errorf("gpt2: layer %d is out of range [0, %d)", layer, m.NLayer)
	}
	if t < 2 {
		return nil, fmt.Errorf("gpt2: sequences of %d token have no next-token targets", t)
	}
	if err := m.checkParts(All(), "LossFrom"); err != nil {
		return nil, err
	}
	if len(resid) != b*t*m.DModel || b*t > ws.maxTokens {
		return nil, fmt.Errorf("gpt2: LossFrom: residual of %d values for %d×%d tokens", len(resid), b, t)
	}
	copy(ws.resid, resid)
	if err := m.runFrom(ws, tokens, b, t, layer+1, m.NLayer-1, nil); err != nil {
		return nil, err
	}
	return m.unembedLoss(ws, tokens, b, t), nil
}

// unembedLoss applies the final LayerNorm and the unembedding to ws.resid
// and returns the per-token cross-entropy (B, T−1), a view into ws.
func (m *Model) unembedLoss(ws *Workspace, tokens []int32, b, t int) []float32 {
	c, v := m.DModel, m.DVocab
	if ws.logits == nil {
		ws.logits = make([]float32, logitRows*v)
		ws.target = make([]int32, logitRows)
		ws.ce = make([]float32, ws.maxTokens)
		ws.rows = make([]int, 0, logitRows)
	}
	kernels.LayerNormPre(ws.xn[:b*t*c], ws.resid[:b*t*c], b*t, c, m.Eps)
	// Rows are gathered so that only positions with a target are unembedded.
	out := ws.ce[:b*(t-1)]
	rows := ws.rows[:0]
	flush := func() {
		k := len(rows)
		if k == 0 {
			return
		}
		lg := ws.logits[:k*v]
		xs := ws.z[:k*c] // z is free after the last block
		for i, r := range rows {
			copy(xs[i*c:(i+1)*c], ws.xn[r*c:(r+1)*c])
			ws.target[i] = tokens[r+1]
		}
		kernels.Linear(lg, xs, m.WU, m.BU, k, c, v)
		ce := ws.tmp[:k] // tmp is free too
		kernels.CrossEntropyRows(ce, lg, ws.target[:k], k, v)
		for i, r := range rows {
			out[(r/t)*(t-1)+r%t] = ce[i]
		}
		rows = rows[:0]
	}
	for r := 0; r < b*t; r++ {
		if r%t == t-1 {
			continue
		}
		rows = append(rows, r)
		if len(rows) == logitRows {
			flush()
		}
	}
	flush()
	return out
}

// run computes the residual stream through block stop (inclusive).
func (m *Model) run(ws *Workspace, tokens []int32, b, t, stop int, hooks *Hooks) error {
	return m.runFrom(ws, tokens, b, t, 0, stop, hooks)
}

// runFrom runs blocks start..stop; for start > 0 the caller has put the
// residual stream after block start−1 in ws.resid.
func (m *Model) runFrom(ws *Workspace, tokens []int32, b, t, start, stop int, hooks *Hooks) error {
	if ws.m != m {
		panic("gpt2: workspace belongs to another model")
	}
	if b*t > ws.maxTokens {
		return fmt.Errorf("gpt2: %d×%d tokens exceed the workspace's %d", b, t, ws.maxTokens)
	}
	if err := m.CheckTokens(tokens, b, t); err != nil {
		return err
	}
	c, n, mt := m.DModel, m.DMLP, b*t
	if need := attentionWorkers * kernels.ScratchSize(t); len(ws.scratch) < need {
		ws.scratch = make([]float32, need)
	}
	resid, xn, qkv, z, tmp := ws.resid[:mt*c], ws.xn[:mt*c], ws.qkv[:mt*3*c], ws.z[:mt*c], ws.tmp[:mt*c]
	hidden := ws.hidden[:mt*n]
	observe := func(string, int, []float32) {}
	if hooks != nil && hooks.Observe != nil {
		observe = hooks.Observe
	}

	if start == 0 {
		m.embed(resid, tokens, mt, t)
	}
	for l := start; l <= stop; l++ {
		blk := &m.Blocks[l]
		kernels.LayerNormPre(xn, resid, mt, c, m.Eps)
		kernels.Linear(qkv, xn, blk.WQKV, blk.BQKV, mt, c, 3*c)
		kernels.CausalAttention(z, qkv, ws.scratch, b, t, m.NHead, m.DHead)
		kernels.Linear(tmp, z, blk.WO, blk.BO, mt, c, c)
		observe("hook_attn_out", l, tmp)
		addInPlace(resid, tmp)
		observe("hook_resid_mid", l, resid)
		kernels.LayerNormPre(xn, resid, mt, c, m.Eps)
		observe("ln2.hook_normalized", l, xn)
		kernels.Linear(hidden, xn, blk.WIn, blk.BIn, mt, c, n)
		kernels.GeluNew(hidden, hidden)
		kernels.Linear(tmp, hidden, blk.WOut, blk.BOut, mt, n, c)
		if hooks != nil && hooks.Splice != nil && hooks.SpliceLayer == l {
			hooks.Splice(xn, tmp)
		}
		observe("hook_mlp_out", l, tmp)
		if l == stop && stop < m.NLayer-1 {
			return nil // RunToBlock: the caller reads xn and tmp
		}
		addInPlace(resid, tmp)
		observe("hook_resid_post", l, resid)
	}
	return nil
}

// embed sets resid (B·T, C) to W_E[token] + W_pos[position]
// (hook_embed + hook_pos_embed).
func (m *Model) embed(resid []float32, tokens []int32, mt, t int) {
	c := m.DModel
	par.For(mt, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			e := m.WE[int(tokens[r])*c:][:c]
			p := m.WPos[(r%t)*c:][:c]
			dst := resid[r*c : (r+1)*c]
			for j := range dst {
				dst[j] = e[j] + p[j]
			}
		}
	})
}

func addInPlace(dst, src []float32) {
	par.Chunks(len(dst), 4096, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i := range d {
			d[i] += s[i]
		}
	})
}

// MLPOut computes blocks.layer.hook_mlp_out from blocks.layer.ln2.hook_normalized
// for rows tokens: y = gelu_new(x @ W_in + b_in) @ W_out + b_out with the
// processed weights, x and y (rows, C), hidden (rows, N) scratch. These are
// the forward pass's own kernels: over the rows of one of its batches, y
// is the pass's, bit for bit.
func (m *Model) MLPOut(layer int, x, y, hidden []float32, rows int) error {
	if err := m.CheckLayer(layer); err != nil {
		return err
	}
	if err := m.checkParts(MLP(layer), "MLPOut"); err != nil {
		return err
	}
	c, n := m.DModel, m.DMLP
	if len(x) < rows*c || len(y) < rows*c || len(hidden) < rows*n {
		return fmt.Errorf("gpt2: MLPOut: buffers too small for %d rows", rows)
	}
	blk := &m.Blocks[layer]
	h := hidden[:rows*n]
	kernels.Linear(h, x[:rows*c], blk.WIn, blk.BIn, rows, c, n)
	kernels.GeluNew(h, h)
	kernels.Linear(y[:rows*c], h, blk.WOut, blk.BOut, rows, n, c)
	return nil
}
