package gpt2

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ctxdep/ctxdep/internal/kernels"
)

// Config holds the shapes and constants of a GPT-2 model, read from a
// Hugging Face config.json.
type Config struct {
	NLayer int     // n_layer
	NHead  int     // n_head
	DModel int     // n_embd
	DHead  int     // n_embd / n_head
	DMLP   int     // n_inner, or 4·n_embd when null
	NCtx   int     // n_positions (n_ctx in old files)
	DVocab int     // vocab_size
	Eps    float64 // layer_norm_epsilon
}

// hfConfig mirrors the config.json keys we read.
type hfConfig struct {
	ModelType                  string   `json:"model_type"`
	NEmbd                      *int     `json:"n_embd"`
	NHead                      *int     `json:"n_head"`
	NLayer                     *int     `json:"n_layer"`
	NPositions                 *int     `json:"n_positions"`
	NCtx                       *int     `json:"n_ctx"`
	NInner                     *int     `json:"n_inner"`
	VocabSize                  *int     `json:"vocab_size"`
	LayerNormEpsilon           *float64 `json:"layer_norm_epsilon"`
	ActivationFunction         *string  `json:"activation_function"`
	ScaleAttnWeights           *bool    `json:"scale_attn_weights"`
	ScaleAttnByInverseLayerIdx *bool    `json:"scale_attn_by_inverse_layer_idx"`
}

// ReadConfig reads and validates a Hugging Face GPT-2 config.json.
func ReadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gpt2: %w", err)
	}
	var h hfConfig
	if err := json.Unmarshal(raw, &h); err != nil {
		return Config{}, fmt.Errorf("gpt2: %s: not a valid config.json: %w", path, err)
	}
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("gpt2: %s: "+format, append([]any{path}, a...)...)
	}
	if h.ModelType != "" && h.ModelType != "gpt2" {
		return bad("model_type is %q, want \"gpt2\"", h.ModelType)
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"n_embd", h.NEmbd}, {"n_head", h.NHead}, {"n_layer", h.NLayer}, {"vocab_size", h.VocabSize}} {
		if f.v == nil {
			return bad("missing %s", f.name)
		}
		if *f.v <= 0 || *f.v > 1<<20 {
			return bad("%s = %d is out of range", f.name, *f.v)
		}
	}
	c := Config{NLayer: *h.NLayer, NHead: *h.NHead, DModel: *h.NEmbd, DVocab: *h.VocabSize, Eps: kernels.LayerNormEps}
	switch {
	case h.NPositions != nil:
		c.NCtx = *h.NPositions
	case h.NCtx != nil:
		c.NCtx = *h.NCtx
	default:
		return bad("missing n_positions")
	}
	if c.NCtx <= 0 || c.NCtx > 1<<20 {
		return bad("n_positions = %d is out of range", c.NCtx)
	}
	if c.DModel%c.NHead != 0 {
		return bad("n_embd %d is not a multiple of n_head %d", c.DModel, c.NHead)
	}
	c.DHead = c.DModel / c.NHead
	c.DMLP = 4 * c.DModel
	if h.NInner != nil {
		if *h.NInner <= 0 || *h.NInner > 1<<20 {
			return bad("n_inner = %d is out of range", *h.NInner)
		}
		c.DMLP = *h.NInner
	}
	if h.LayerNormEpsilon != nil {
		if !(*h.LayerNormEpsilon > 0 && *h.LayerNormEpsilon < 1) {
			return bad("layer_norm_epsilon = %g is out of range", *h.LayerNormEpsilon)
		}
		c.Eps = *h.LayerNormEpsilon
	}
	if h.ActivationFunction != nil && *h.ActivationFunction != "gelu_new" {
		return bad("activation_function %q is not supported (GPT-2 uses gelu_new)", *h.ActivationFunction)
	}
	if h.ScaleAttnWeights != nil && !*h.ScaleAttnWeights {
		return bad("scale_attn_weights false is not supported")
	}
	if h.ScaleAttnByInverseLayerIdx != nil && *h.ScaleAttnByInverseLayerIdx {
		return bad("scale_attn_by_inverse_layer_idx true is not supported")
	}
	return c, nil
}
