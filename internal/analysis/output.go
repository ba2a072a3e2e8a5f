package analysis

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/midcoder"
)

// The output-side view of a feature page: which tokens the feature pushes
// up and down, two ways.
//
//	W_dec[f] @ W_U   the transcoder's own decoder row through the processed
//	                 unembedding (layer norm folded in, centred over the
//	                 vocabulary): the direct logit effect of the feature's
//	                 output per unit activation.
//	MLP effect       the midcoder's claim about the same feature, through
//	                 the real MLP: Δ = (σ(pre₀ + ā_f·drive_f) − σ(pre₀)) @ W_out
//	                 @ W_U, where pre₀ = b_mid @ W_in + b_in is the MLP's
//	                 pre-activation when no feature is active, drive_f =
//	                 W_mid[f] @ W_in, ā_f the feature's mean activation when
//	                 it fires, and σ the activation the midcoder was fitted
//	                 through. It is what the midcoder predicts f alone adds
//	                 to the MLP's output at its typical strength, scaled by
//	                 1/ā_f to be per unit activation like the first. It
//	                 ignores the other features of a context: that is the
//	                 part the consistency statistics measure.

// TokenLogit is one token of an output-side list.
type TokenLogit struct {
	Token int32
	Logit float32
}

// OutputView lists the most promoted and most suppressed tokens.
type OutputView struct {
	DecUp, DecDown []TokenLogit // W_dec[f] @ W_U; nil without the transcoder
	MLPUp, MLPDown []TokenLogit // the midcoder's MLP effect; nil without W_out
}

// outputInput is what the output views need.
type outputInput struct {
	wU    []float32 // (C, V)
	v     int
	wDec  []float32 // (F, C) or nil
	mlp   *midcoder.MLP
	fit   *midcoder.Params
	c, n  int
	means map[int]float64 // ā_f
}

// outputViews computes the views of features fs, in blocks of 64 so that
// memory stays at 64 × V floats.
func outputViews(in outputInput, fs []int) map[int]*OutputView {
	out := map[int]*OutputView{}
	if in.wU == nil || in.v == 0 || len(fs) == 0 {
		return out
	}
	for _, f := range fs {
		out[f] = &OutputView{}
	}
	c, n, v := in.c, in.n, in.v
	const block = 64
	rows := make([]float32, block*c)
	logits := make([]float32, block*v)
	// pre₀ and σ(pre₀), once.
	var pre0, h0 []float32
	haveMLP := in.mlp != nil && len(in.mlp.WOut) == n*c && in.fit != nil
	if haveMLP {
		pre0 = slices.Clone(in.mlp.BIn)
		kernels.MatMul(pre0, in.fit.BMid, in.mlp.WIn, 1, c, n, true)
		h0 = activate(in.mlp.Act, pre0)
	}
	top := func(l []float32, up bool) []TokenLogit {
		idx := make([]int32, outputTokens)
		val := make([]float32, outputTokens)
		k := topSigned(l, idx, val, up)
		res := make([]TokenLogit, k)
		for i := range res {
			res[i] = TokenLogit{idx[i], val[i]}
		}
		return res
	}
	run := func(which string) {
		for b0 := 0; b0 < len(fs); b0 += block {
			part := fs[b0:min(len(fs), b0+block)]
			m := len(part)
			for i, f := range part {
				r := rows[i*c : (i+1)*c]
				if which == "dec" {
					copy(r, in.wDec[f*c:(f+1)*c])
					continue
				}
				a := in.means[f]
				if !(a > 0) {
					a = 1
				}
				pre := make([]float32, n)
				kernels.MatMul(pre, in.fit.WMid[f*c:(f+1)*c], in.mlp.WIn, 1, c, n, false)
				for j := range pre {
					pre[j] = pre0[j] + float32(a)*pre[j]
				}
				h := activate(in.mlp.Act, pre)
				for j := range h {
					h[j] = (h[j] - h0[j]) / float32(a)
				}
				kernels.MatMul(r, h, in.mlp.WOut, 1, n, c, false)
			}
			kernels.MatMul(logits[:m*v], rows[:m*c], in.wU, m, c, v, false)
			for i, f := range part {
				l := logits[i*v : (i+1)*v]
				if which == "dec" {
					out[f].DecUp, out[f].DecDown = top(l, true), top(l, false)
				} else {
					out[f].MLPUp, out[f].MLPDown = top(l, true), top(l, false)
				}
			}
		}
	}
	if in.wDec != nil {
		run("dec")
	}
	if haveMLP {
		run("mlp")
	}
	return out
}

// activate applies σ to pre, into a new slice.
func activate(act midcoder.Activation, pre []float32) []float32 {
	h := make([]float32, len(pre))
	if act == midcoder.GeluNew {
		kernels.GeluNewNaive(h, pre)
		return h
	}
	for i, x := range pre {
		h[i] = max(x, 0)
	}
	return h
}

// topSigned fills idx and val with the entries of l of largest value (up)
// or smallest (down), in that order, ties to the lower index; it returns
// how many it filled.
func topSigned(l []float32, idx []int32, val []float32, up bool) int {
	k := min(len(idx), len(l))
	filled := 0
	less := func(a, b float32) bool { // a ranks after b
		if up {
			return a < b
		}
		return a > b
	}
	for j, x := range l {
		if filled == k && !less(val[k-1], x) {
			continue
		}
		p := min(filled, k-1)
		for p > 0 && less(val[p-1], x) {
			idx[p], val[p] = idx[p-1], val[p-1]
			p--
		}
		idx[p], val[p] = int32(j), x
		if filled < k {
			filled++
		}
	}
	return filled
}

// releasedTranscoder matches the released GPT-2 small transcoders' file
// names (pchlenski/gpt2-transcoders).
var releasedTranscoder = regexp.MustCompile(`final_sparse_autoencoder_gpt2-small_blocks\.(\d+)\.ln2\.hook_normalized_24576\.pt$`)

// NeuronpediaBase returns the Neuronpedia address of the transcoder's
// feature pages ("" when it is not one of the released GPT-2 small
// transcoders): recognised by the file name and by its shape, d_model 768
// and 24,576 features, and the layer in the name must be the cache's.
//
// The scheme https://www.neuronpedia.org/gpt2-small/{L}-tres-dc/{feature}
// ("tres-dc": transcoders, Dunefsky and Chlenski) was checked against
// public material that links these pages: the ARENA transcoder exercises
// embed https://neuronpedia.org/gpt2-small/8-tres-dc/1 for feature 1 of
// the layer-8 transcoder, and a circuit-analysis library lists "tres-dc"
// beside "res-jb" among Neuronpedia's GPT-2 small SAE families.
// Neuronpedia's own pages could not be fetched from here.
func NeuronpediaBase(transcoderPath string, layer, dModel, dSAE int) string {
	m := releasedTranscoder.FindStringSubmatch(transcoderPath)
	if m == nil || dModel != 768 || dSAE != 24576 {
		return ""
	}
	if l, err := strconv.Atoi(m[1]); err != nil || l != layer {
		return ""
	}
	return fmt.Sprintf("https://www.neuronpedia.org/gpt2-small/%d-tres-dc/", layer)
}
