package analysis

import (
	"context"
	"fmt"
	"io"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Midcoder is one set of mid vectors to evaluate (from fit or
// pinv-baseline).
type Midcoder struct {
	File   string
	Params *midcoder.Params
	MLP    *midcoder.MLP // the layer's MLP with the file's activation
}

// MidcoderResult is one midcoder's scores.
type MidcoderResult struct {
	File string  `json:"file"`
	CE   float64 `json:"ce"`   // mean next-token cross-entropy with its output spliced in
	MSE  float64 `json:"mse"`  // mean over all elements of (out − y)²
	NMSE float64 `json:"nmse"` // mse / mean(y²)
}

// EvalResult is what `ctxdep evaluate` reports.
type EvalResult struct {
	Tokens         int64            `json:"tokens"`      // cached tokens
	Predictions    int64            `json:"predictions"` // positions with a next token
	CEClean        float64          `json:"ce_clean"`
	CETranscoder   float64          `json:"ce_transcoder"`
	MSETranscoder  float64          `json:"mse_transcoder"`
	NMSETranscoder float64          `json:"nmse_transcoder"`
	CEZeroAblation float64          `json:"ce_zero_ablation"`
	Midcoders      []MidcoderResult `json:"midcoders"`
}

// An EvalPass is Evaluate's work on batches of cached token rows: the
// model to block L once, the transcoder's encoder, then the rest of the
// model once per variant of blocks.L.hook_mlp_out: clean, the
// transcoder's reconstruction, zero ablation, and each midcoder's output,
// in that order. NewCPUEvalPass runs it on the CPU; internal/cuda's
// Evaluator on a GPU.
type EvalPass interface {
	// Rows is the most sequences one Batch takes.
	Rows() int
	// Batch adds, for b rows of t tokens, each variant's next-token
	// cross-entropy summed over the b·(t−1) predictions to ce (3 +
	// midcoders, float64), each reconstruction's squared error against
	// y summed over the elements to se (1 + midcoders: the transcoder,
	// then the midcoders), and Σ y² to y2.
	Batch(tokens []int32, b, t int, ce, se []float64, y2 *float64) error
	// Close releases the pass's buffers.
	Close()
}

// evalBatch is how many cached sequences one CPU pass takes.
const evalBatch = 8

// CheckEval reports whether the cache, model and transcoder fit together
// for Evaluate.
func CheckEval(m *gpt2.Model, c *actcache.Cache, tc *transcoder.Transcoder) error {
	man := c.Manifest
	layer, d := man.Layer, man.DModel
	if d != m.DModel || layer >= m.NLayer || tc.DIn != d || tc.DOut != d {
		return fmt.Errorf("the cache (layer %d, d_model %d), model (%d layers, d_model %d) and transcoder (%d → %d) do not fit together", layer, d, m.NLayer, m.DModel, tc.DIn, tc.DOut)
	}
	return nil
}

// Evaluate runs the model over every cached sequence with
// blocks.L.hook_mlp_out as it is (clean), replaced by the transcoder's
// reconstruction, by each midcoder's output, and by zeros (pass does the
// work, batch by batch); it returns the mean next-token cross-entropy of
// each (nats) and the reconstruction errors against the clean
// hook_mlp_out. mids names the midcoders pass evaluates, in its order.
func Evaluate(ctx context.Context, pass EvalPass, c *actcache.Cache, mids []Midcoder, bar *progress.Bar) (*EvalResult, error) {
	man := c.Manifest
	t, d := man.ContextLength, man.DModel
	// Sums in float64: CE per variant; squared errors per reconstruction.
	ceSum := make([]float64, 3+len(mids)) // clean, transcoder, zero, midcoders…
	seSum := make([]float64, 1+len(mids))
	var y2Sum float64
	var preds int64
	rd, err := c.NewReader(ctx, actcache.ReadOptions{})
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for {
		batch, err := rd.Next(pass.Rows())
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := pass.Batch(batch.Tokens, batch.N, t, ceSum, seSum, &y2Sum); err != nil {
			return nil, err
		}
		preds += int64(batch.N * (t - 1))
		if bar != nil {
			bar.Add(int64(batch.N*t), "")
		}
	}
	elems := float64(man.NTokens) * float64(d)
	meanY2 := y2Sum / elems
	res := &EvalResult{Tokens: man.NTokens, Predictions: preds,
		CEClean: ceSum[0] / float64(preds), CETranscoder: ceSum[1] / float64(preds), CEZeroAblation: ceSum[2] / float64(preds),
		MSETranscoder: seSum[0] / elems, NMSETranscoder: seSum[0] / elems / meanY2}
	for k, mc := range mids {
		mse := seSum[1+k] / elems
		res.Midcoders = append(res.Midcoders, MidcoderResult{File: mc.File, CE: ceSum[3+k] / float64(preds), MSE: mse, NMSE: mse / meanY2})
	}
	return res, nil
}

// cpuEvalPass is EvalPass on the CPU. Memory: one batch.
type cpuEvalPass struct {
	m                       *gpt2.Model
	layer                   int
	tc                      *transcoder.Transcoder
	ws                      *gpt2.Workspace
	enc                     *transcoder.Encoder
	acts                    transcoder.Acts
	models                  []*midcoder.Model
	y, residMid, repl, post []float32
	keepMid                 *gpt2.Hooks
}

// NewCPUEvalPass returns Evaluate's pass on the CPU at block layer, for
// rows of t tokens.
func NewCPUEvalPass(m *gpt2.Model, layer int, tc *transcoder.Transcoder, mids []Midcoder, t int) EvalPass {
	n := evalBatch * t * m.DModel
	p := &cpuEvalPass{m: m, layer: layer, tc: tc, ws: m.NewWorkspace(evalBatch * t), enc: tc.NewEncoder(),
		y: make([]float32, n), residMid: make([]float32, n), repl: make([]float32, n), post: make([]float32, n)}
	for _, mc := range mids {
		p.models = append(p.models, midcoder.NewModel(mc.MLP, mc.Params, evalBatch*t))
	}
	p.keepMid = &gpt2.Hooks{Observe: func(hook string, l int, v []float32) {
		if hook == "hook_resid_mid" && l == layer {
			copy(p.residMid, v)
		}
	}}
	return p
}

func (p *cpuEvalPass) Rows() int { return evalBatch }

func (p *cpuEvalPass) Close() {}

// Batch runs the blocks up to L once: x is encoded, y and resid_mid of
// block L are kept, and each variant continues from resid_mid + its
// replacement of y (gpt2.LossFrom).
func (p *cpuEvalPass) Batch(tok []int32, b, t int, ce, se []float64, y2 *float64) error {
	n := b * t * p.m.DModel
	xb, yb, err := p.m.RunToBlock(p.ws, tok, b, t, p.layer, p.keepMid)
	if err != nil {
		return err
	}
	// xb and yb are views into ws: x is encoded before LossFrom reuses
	// ws, y is kept for every variant.
	p.enc.Encode(&p.acts, xb, b*t)
	y, repl, post := p.y[:n], p.repl[:n], p.post[:n]
	copy(y, yb)
	for _, yv := range y {
		*y2 += float64(yv) * float64(yv)
	}
	for v := range ce {
		switch {
		case v == 0: // clean
			copy(repl, y)
		case v == 1: // the transcoder's reconstruction
			p.tc.Decode(repl, &p.acts)
			se[0] += sqErr(repl, y)
		case v == 2: // zero ablation
			clear(repl)
		default:
			k := v - 3
			copy(repl, p.models[k].Forward(&p.acts))
			se[1+k] += sqErr(repl, y)
		}
		for i := range post {
			post[i] = p.residMid[i] + repl[i]
		}
		losses, err := p.m.LossFrom(p.ws, tok, b, t, p.layer, post)
		if err != nil {
			return err
		}
		for _, l := range losses {
			ce[v] += float64(l)
		}
	}
	return nil
}

func sqErr(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		e := float64(v) - float64(b[i])
		s += e * e
	}
	return s
}
