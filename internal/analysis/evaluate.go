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

// evalBatch is how many cached sequences one forward pass takes.
const evalBatch = 8

// Evaluate runs the model over every cached sequence with
// blocks.L.hook_mlp_out as it is (clean), replaced by the transcoder's
// reconstruction, by each midcoder's output, and by zeros; it returns the
// mean next-token cross-entropy of each (nats) and the reconstruction
// errors against the clean hook_mlp_out. Memory is two shards (one read
// ahead) and one batch.
func Evaluate(ctx context.Context, m *gpt2.Model, c *actcache.Cache, tc *transcoder.Transcoder, mids []Midcoder, bar *progress.Bar) (*EvalResult, error) {
	man := c.Manifest
	layer, t, d := man.Layer, man.ContextLength, man.DModel
	if d != m.DModel || layer >= m.NLayer || tc.DIn != d || tc.DOut != d {
		return nil, fmt.Errorf("the cache (layer %d, d_model %d), model (%d layers, d_model %d) and transcoder (%d → %d) do not fit together", layer, d, m.NLayer, m.DModel, tc.DIn, tc.DOut)
	}
	ws := m.NewWorkspace(evalBatch * t)
	enc := tc.NewEncoder()
	var acts transcoder.Acts
	models := make([]*midcoder.Model, len(mids))
	for i, mc := range mids {
		models[i] = midcoder.NewModel(mc.MLP, mc.Params, evalBatch*t)
	}
	// Sums in float64: CE per variant; squared errors per reconstruction.
	nv := 3 + len(mids) // clean, transcoder, zero, midcoders…
	ceSum := make([]float64, nv)
	seSum := make([]float64, 1+len(mids))
	var y2Sum float64
	var preds int64
	// Per batch, the blocks up to L run once: x is encoded, y and resid_mid
	// of block L are kept, and each variant continues from resid_mid + its
	// replacement of y (gpt2.LossFrom).
	y := make([]float32, evalBatch*t*d)
	residMid := make([]float32, evalBatch*t*d)
	repl := make([]float32, evalBatch*t*d)
	post := make([]float32, evalBatch*t*d)
	keepMid := &gpt2.Hooks{Observe: func(hook string, l int, v []float32) {
		if hook == "hook_resid_mid" && l == layer {
			copy(residMid, v)
		}
	}}
	rd, err := c.NewReader(ctx, actcache.ReadOptions{})
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for {
		batch, err := rd.Next(evalBatch)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		b := batch.N
		tok := batch.Tokens
		n := b * t * d
		xb, yb, err := m.RunToBlock(ws, tok, b, t, layer, keepMid)
		if err != nil {
			return nil, err
		}
		// xb and yb are views into ws: x is encoded before LossFrom
		// reuses ws, y is kept for every variant.
		enc.Encode(&acts, xb, b*t)
		copy(y, yb)
		for _, yv := range y[:n] {
			y2Sum += float64(yv) * float64(yv)
		}
		for v := 0; v < nv; v++ {
			switch {
			case v == 0: // clean
				copy(repl, y[:n])
			case v == 1: // the transcoder's reconstruction
				tc.Decode(repl[:n], &acts)
				seSum[0] += sqErr(repl[:n], y[:n])
			case v == 2: // zero ablation
				clear(repl[:n])
			default:
				k := v - 3
				copy(repl, models[k].Forward(&acts))
				seSum[1+k] += sqErr(repl[:n], y[:n])
			}
			for i := 0; i < n; i++ {
				post[i] = residMid[i] + repl[i]
			}
			ce, err := m.LossFrom(ws, tok, b, t, layer, post[:n])
			if err != nil {
				return nil, err
			}
			for _, l := range ce {
				ceSum[v] += float64(l)
			}
		}
		preds += int64(b * (t - 1))
		if bar != nil {
			bar.Add(int64(b*t), "")
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

func sqErr(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		e := float64(v) - float64(b[i])
		s += e * e
	}
	return s
}
