//go:build cuda || cudasim

package cuda

import (
	"fmt"
	"math"
	"slices"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
)

// Model is GPT-2 up to one block on the device, with buffers for passes of
// up to maxTokens tokens. After run, X and Y hold blocks.L.ln2.hook_normalized
// and blocks.L.hook_mlp_out (B·T, C) on the device.
type Model struct {
	d         *Device
	cfg       gpt2.Config
	layer     int
	maxTokens int
	maxT      int

	we, wpos buf
	blocks   []devBlock
	tokens   buf // (B·T) int32
	resid    buf // (B·T, C)
	xn       buf // (B·T, C): x after Run
	qkv      buf // (B·T, 3C)
	z        buf // (B·T, C)
	tmp      buf // (B·T, C): y after Run
	hidden   buf // (B·T, N)
	heads    buf // (3, B, H, T, D): Q, K, V by head; then pattern @ V in Q's place
	scores   buf // (B, H, T, T)
	wu, bu   buf // the unembedding, after loadUnembed
	logits   buf // (B·T, V), after loadUnembed
	all      allocList
}

type devBlock struct{ wqkv, bqkv, wo, bo, win, bin, wout, bout buf }

// LoadModel uploads the weights of blocks 0..layer of m and allocates
// buffers for passes of up to maxTokens tokens in rows of at most maxT.
func (d *Device) LoadModel(m *gpt2.Model, layer, maxTokens, maxT int) (*Model, error) {
	defer d.enter()()
	if layer < 0 || layer >= m.NLayer {
		return nil, fmt.Errorf("cuda: layer %d is out of range [0, %d)", layer, m.NLayer)
	}
	if maxT > m.NCtx || maxT <= 0 || maxTokens < maxT {
		return nil, fmt.Errorf("cuda: rows of %d tokens in batches of %d do not fit the model's context of %d", maxT, maxTokens, m.NCtx)
	}
	g := &Model{d: d, cfg: m.Config, layer: layer, maxTokens: maxTokens, maxT: maxT, all: allocList{d: d}}
	a := &g.all
	a.upload(&g.we, "W_E", m.WE)
	a.upload(&g.wpos, "W_pos", m.WPos)
	g.blocks = make([]devBlock, layer+1)
	for l := 0; l <= layer; l++ {
		b, src := &g.blocks[l], &m.Blocks[l]
		a.upload(&b.wqkv, "W_QKV", src.WQKV)
		a.upload(&b.bqkv, "b_QKV", src.BQKV)
		a.upload(&b.wo, "W_O", src.WO)
		a.upload(&b.bo, "b_O", src.BO)
		a.upload(&b.win, "W_in", src.WIn)
		a.upload(&b.bin, "b_in", src.BIn)
		a.upload(&b.wout, "W_out", src.WOut)
		a.upload(&b.bout, "b_out", src.BOut)
	}
	c, n := m.DModel, m.DMLP
	a.add(&g.tokens, "token ids", maxTokens, 4)
	a.add(&g.resid, "residual stream", maxTokens*c, 4)
	a.add(&g.xn, "LayerNorm output", maxTokens*c, 4)
	a.add(&g.qkv, "Q, K, V", maxTokens*3*c, 4)
	a.add(&g.z, "attention output", maxTokens*c, 4)
	a.add(&g.tmp, "block output", maxTokens*c, 4)
	a.add(&g.hidden, "MLP hidden", maxTokens*n, 4)
	a.add(&g.heads, "Q, K, V by head", maxTokens*3*c, 4)
	a.add(&g.scores, "attention scores", maxTokens*m.NHead*maxT, 4)
	if err := a.done(); err != nil {
		return nil, err
	}
	return g, nil
}

// Free releases the model's device memory.
func (g *Model) Free() {
	defer g.d.enter()()
	g.all.freeAll()
}

// X and Y are the device buffers of x and y after run.
func (g *Model) X() buf { return g.xn }
func (g *Model) Y() buf { return g.tmp }

// run runs tokens (B·T, checked by the caller with gpt2.Model.CheckTokens)
// through blocks 0..layer, leaving x and y on the device. The context must
// be current.
func (g *Model) run(tokens []int32, b, t int) error { return g.runWatching(tokens, b, t, nil) }

// runWatching is run that calls after(l) once block l has run, while X
// and Y hold its x and y (the residual stream has moved on to block l+1's
// input by then, but xn and tmp are not touched until the next block).
func (g *Model) runWatching(tokens []int32, b, t int, after func(l int) error) error {
	return g.runTo(tokens, b, t, g.layer, after)
}

// runTo is runWatching to block stop (at most the last block loaded).
func (g *Model) runTo(tokens []int32, b, t, stop int, after func(l int) error) error {
	d, cfg := g.d, g.cfg
	mt, c := b*t, cfg.DModel
	if mt > g.maxTokens || t > g.maxT || len(tokens) != mt {
		return fmt.Errorf("cuda: %d×%d tokens exceed the model's buffers (%d tokens, rows of %d)", b, t, g.maxTokens, g.maxT)
	}
	if err := h2d(g.tokens, tokens); err != nil {
		return err
	}
	if err := d.launch("embed", mt, 256, g.resid, g.tokens, g.we, g.wpos, t, c); err != nil {
		return err
	}
	if stop < 0 || stop > g.layer {
		return fmt.Errorf("cuda: running to block %d of a model loaded to block %d", stop, g.layer)
	}
	for l := 0; l <= stop; l++ {
		if err := g.block(&g.blocks[l], b, t, l == stop); err != nil {
			return err
		}
		if after != nil {
			if err := after(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// continueFrom runs blocks start.. to the last loaded on the residual
// stream, each adding its MLP's output (gpt2.Model.LossFrom's blocks).
func (g *Model) continueFrom(b, t, start int) error {
	for l := start; l <= g.layer; l++ {
		if err := g.block(&g.blocks[l], b, t, false); err != nil {
			return err
		}
	}
	return nil
}

// loadUnembed uploads the unembedding of m (whose every block g holds)
// and allocates the logits.
func (g *Model) loadUnembed(m *gpt2.Model) error {
	defer g.d.enter()()
	if g.layer != m.NLayer-1 {
		return fmt.Errorf("cuda: the unembedding needs all %d blocks; %d loaded", m.NLayer, g.layer+1)
	}
	a := &g.all
	a.upload(&g.wu, "W_U", m.WU)
	if slices.ContainsFunc(m.BU, func(v float32) bool { return v != 0 }) {
		a.upload(&g.bu, "b_U", m.BU) // GPT-2's is zero: linear then skips the pass over the logits
	}
	a.add(&g.logits, "logits", g.maxTokens*m.DVocab, 4)
	return a.err
}

// unembedLoss applies the final LayerNorm and the unembedding to the
// residual stream and sets ce (B·T) to each position's next-token
// cross-entropy (0 at a sequence's last position), for the tokens of
// the last run (gpt2.Model.LossFrom's unembedLoss).
func (g *Model) unembedLoss(ce buf, b, t int) error {
	d, cfg := g.d, g.cfg
	mt, c, v := b*t, cfg.DModel, cfg.DVocab
	if err := d.launch("layernorm_pre", mt, 256, g.xn, g.resid, c, float32(cfg.Eps)); err != nil {
		return err
	}
	if err := d.linear(g.logits, g.xn, g.wu, g.bu, mt, c, v, actNone); err != nil {
		return err
	}
	return d.launch("cross_entropy", mt, 256, ce, g.logits, g.tokens, t, v)
}

// block runs one transformer block on the residual stream; the last one
// stops before adding the MLP's output, which stays in tmp as y.
func (g *Model) block(blk *devBlock, b, t int, last bool) error {
	d, cfg := g.d, g.cfg
	mt, c, n, h, dh := b*t, cfg.DModel, cfg.DMLP, cfg.NHead, cfg.DHead
	eps := float32(cfg.Eps)
	scale := float32(1 / math.Sqrt(float64(dh)))
	if err := d.launch("layernorm_pre", mt, 256, g.xn, g.resid, c, eps); err != nil {
		return err
	}
	if err := d.linear(g.qkv, g.xn, blk.wqkv, blk.bqkv, mt, c, 3*c, actNone); err != nil {
		return err
	}
	if err := g.attention(b, t, h, dh, c, scale); err != nil {
		return err
	}
	if err := d.linear(g.tmp, g.z, blk.wo, blk.bo, mt, c, c, actNone); err != nil {
		return err
	}
	if err := d.launch("add_inplace", d.grid1D(mt*c), 256, g.resid, g.tmp, mt*c); err != nil {
		return err
	}
	if err := d.launch("layernorm_pre", mt, 256, g.xn, g.resid, c, eps); err != nil {
		return err
	}
	if err := d.linear(g.hidden, g.xn, blk.win, blk.bin, mt, c, n, actGeluNew); err != nil {
		return err
	}
	if err := d.linear(g.tmp, g.hidden, blk.wout, blk.bout, mt, n, c, actNone); err != nil {
		return err
	}
	if last {
		return nil
	}
	return d.launch("add_inplace", d.grid1D(mt*c), 256, g.resid, g.tmp, mt*c)
}

// attention computes z from qkv (kernels.CausalAttention): the heads are
// laid out as (B, H, T, D) so that the scores of all B·H (row, head) pairs
// are one strided-batched GEMM, then one causal softmax over all rows,
// pattern @ V as another batched GEMM, and the heads merged back.
func (g *Model) attention(b, t, h, dh, c int, scale float32) error {
	d := g.d
	part := b * t * c
	q, k, v := g.heads.at(0), g.heads.at(part), g.heads.at(2*part)
	if err := d.launch("split_heads", b*t, 256, g.heads, g.qkv, b, t, h, dh); err != nil {
		return err
	}
	if err := d.gemmBatched(false, true, t, t, dh, 1, q, dh, t*dh, k, dh, t*dh, 0, g.scores.p, t, t*t, b*h); err != nil {
		return err
	}
	if err := d.launch("causal_softmax", b*h*t, 128, g.scores, t, scale); err != nil {
		return err
	}
	// The pattern @ V of each pair goes where its Q was (no longer needed).
	if err := d.gemmBatched(false, false, t, dh, t, 1, g.scores.p, t, t*t, v, dh, t*dh, 0, q, dh, t*dh, b*h); err != nil {
		return err
	}
	return d.launch("merge_heads", b*t, 256, g.z, g.heads, b, t, h, dh)
}

// Activations of the bias_act kernel.
const (
	actNone    = 0
	actGeluNew = 1
	actReLU    = 2
)

// actOf is a midcoder MLP's activation as the kernels name it.
func actOf(a midcoder.Activation) int {
	if a == midcoder.GeluNew {
		return actGeluNew
	}
	return actReLU
}

// linear sets dst (M, N) = act(a (M, K) @ w (K, N) + bias).
func (d *Device) linear(dst, a, w, bias buf, m, k, n, act int) error {
	if err := d.gemm(false, false, m, n, k, 1, a.p, k, w.p, n, 0, dst.p, n); err != nil {
		return err
	}
	if bias.p == 0 && act == actNone {
		return nil
	}
	return d.launch("bias_act", d.grid1D(m*n), 256, dst, dst, bias, m, n, act)
}
