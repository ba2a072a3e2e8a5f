package gpt2

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// WriteRandomCheckpoint writes a Hugging Face GPT-2 checkpoint of shape cfg
// with seeded N(0, 0.02²) weights (LayerNorm gains near 1) into dir:
// config.json and model.safetensors in HF's layout, causal-mask buffers
// included, as scripts/make_random_gpt2.py writes them.
func WriteRandomCheckpoint(dir string, cfg Config, seed uint64) error {
	conf, _ := json.Marshal(map[string]any{"model_type": "gpt2", "n_embd": cfg.DModel, "n_head": cfg.NHead, "n_layer": cfg.NLayer,
		"n_positions": cfg.NCtx, "n_inner": cfg.DMLP, "vocab_size": cfg.DVocab, "layer_norm_epsilon": cfg.Eps, "activation_function": "gelu_new"})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), conf, 0o644); err != nil {
		return err
	}
	c, n, v := cfg.DModel, cfg.DMLP, cfg.DVocab
	type tensor struct {
		name  string
		shape []int
		gain  bool // 1 + N(0, 0.02²)
		mask  bool
	}
	ts := []tensor{{name: "wte.weight", shape: []int{v, c}}, {name: "wpe.weight", shape: []int{cfg.NCtx, c}}}
	for l := 0; l < cfg.NLayer; l++ {
		p := "h." + strconv.Itoa(l) + "."
		ts = append(ts, tensor{name: p + "ln_1.weight", shape: []int{c}, gain: true}, tensor{name: p + "ln_1.bias", shape: []int{c}},
			tensor{name: p + "attn.bias", shape: []int{1, 1, cfg.NCtx, cfg.NCtx}, mask: true},
			tensor{name: p + "attn.c_attn.weight", shape: []int{c, 3 * c}}, tensor{name: p + "attn.c_attn.bias", shape: []int{3 * c}},
			tensor{name: p + "attn.c_proj.weight", shape: []int{c, c}}, tensor{name: p + "attn.c_proj.bias", shape: []int{c}},
			tensor{name: p + "ln_2.weight", shape: []int{c}, gain: true}, tensor{name: p + "ln_2.bias", shape: []int{c}},
			tensor{name: p + "mlp.c_fc.weight", shape: []int{c, n}}, tensor{name: p + "mlp.c_fc.bias", shape: []int{n}},
			tensor{name: p + "mlp.c_proj.weight", shape: []int{n, c}}, tensor{name: p + "mlp.c_proj.bias", shape: []int{c}})
	}
	ts = append(ts, tensor{name: "ln_f.weight", shape: []int{c}, gain: true}, tensor{name: "ln_f.bias", shape: []int{c}})
	infos := make([]safetensors.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = safetensors.TensorInfo{Name: t.name, DType: safetensors.F32, Shape: t.shape}
	}
	w, err := safetensors.Create(filepath.Join(dir, SafetensorsFile), infos, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for _, t := range ts {
		size := 1
		for _, d := range t.shape {
			size *= d
		}
		vals := make([]float32, size)
		for i := range vals {
			switch {
			case t.mask:
				if i%cfg.NCtx <= i/cfg.NCtx%cfg.NCtx {
					vals[i] = 1
				}
			case t.gain:
				vals[i] = 1 + 0.02*float32(r.NormFloat64())
			default:
				vals[i] = 0.02 * float32(r.NormFloat64())
			}
		}
		if err := w.WriteFloat32(vals); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}
