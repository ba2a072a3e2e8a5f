package gpt2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Model is GPT-2 after TransformerLens's processing. Weight matrices are
// row-major and multiply activations from the right (x @ W).
type Model struct {
	Config
	WE     []float32 // (V, C) embed.W_E, centred
	WPos   []float32 // (NCtx, C) pos_embed.W_pos, centred
	Blocks []Block   // (NLayer)
	WU     []float32 // (C, V) unembed.W_U
	BU     []float32 // (V) unembed.b_U

	// Loaded is what the model holds (normal for its Config): everything
	// for Load and Random, the parts asked for for LoadParts, whose other
	// weights are nil.
	Loaded Parts
}

// Block is one processed transformer block. TransformerLens's W_Q, W_K,
// W_V [H, C, D] are stored fused as the columns of WQKV, in HF's c_attn
// layout: column X·C + i·D + h holds W_X[i, :, h] for X = Q, K, V.
type Block struct {
	WQKV []float32 // (C, 3C)
	BQKV []float32 // (3C); the V part is zero after fold_value_biases
	WO   []float32 // (C, C) row i·D + h is W_O[i, h, :]
	BO   []float32 // (C)
	WIn  []float32 // (C, N) mlp.W_in
	BIn  []float32 // (N)
	WOut []float32 // (N, C) mlp.W_out
	BOut []float32 // (C)
}

// Weight file names in a Hugging Face checkpoint directory, in order of
// preference.
const (
	SafetensorsFile = "model.safetensors"
	TorchFile       = "pytorch_model.bin"
)

// Load reads a Hugging Face GPT-2 checkpoint directory (config.json plus
// model.safetensors or pytorch_model.bin) and returns the processed model.
func Load(dir string) (*Model, error) { return LoadParts(dir, All()) }

// WeightsPath returns the weights file Load would read in dir.
func WeightsPath(dir string) (string, error) {
	for _, name := range []string{SafetensorsFile, TorchFile} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("gpt2: %w", err)
		}
	}
	return "", fmt.Errorf("gpt2: %s holds neither %s nor %s", dir, SafetensorsFile, TorchFile)
}

// hfName maps a checkpoint tensor name to the un-prefixed HF name, and
// reports whether the tensor is a weight at all: the causal-mask buffers
// (h.N.attn.bias, h.N.attn.masked_bias) and the tied lm_head are skipped.
func hfName(name string) (string, bool) {
	name = strings.TrimPrefix(name, "transformer.")
	if name == "lm_head.weight" || strings.HasSuffix(name, ".attn.bias") || strings.HasSuffix(name, ".attn.masked_bias") {
		return "", false
	}
	return name, true
}

// readHF reads every weight of src unprocessed, one tensor at a time: the
// reference loader that LoadParts must agree with bit for bit.
func readHF(cfg Config, src source) (*hfWeights, error) {
	byName, err := checkHeader(cfg, src)
	if err != nil {
		return nil, err
	}
	ld := &loader{byName: byName, whole: true}
	got := make(map[string][]float32, len(byName))
	for name := range byName {
		if got[name], err = ld.read(name); err != nil {
			return nil, err
		}
	}
	hf := &hfWeights{wte: got["wte.weight"], wpe: got["wpe.weight"], lnfW: got["ln_f.weight"], lnfB: got["ln_f.bias"]}
	for l := 0; l < cfg.NLayer; l++ {
		p := "h." + strconv.Itoa(l) + "."
		hf.blocks = append(hf.blocks, hfBlock{
			ln1W: got[p+"ln_1.weight"], ln1B: got[p+"ln_1.bias"],
			attnW: got[p+"attn.c_attn.weight"], attnB: got[p+"attn.c_attn.bias"],
			projW: got[p+"attn.c_proj.weight"], projB: got[p+"attn.c_proj.bias"],
			ln2W: got[p+"ln_2.weight"], ln2B: got[p+"ln_2.bias"],
			fcW: got[p+"mlp.c_fc.weight"], fcB: got[p+"mlp.c_fc.bias"],
			outW: got[p+"mlp.c_proj.weight"], outB: got[p+"mlp.c_proj.bias"],
		})
	}
	return hf, nil
}

// CheckLayer returns an error that names the model's layers when layer is
// not one of them: the one check of a layer number against a model.
func (m *Model) CheckLayer(layer int) error {
	if layer < 0 || layer >= m.NLayer {
		return fmt.Errorf("layer %d is out of range: the model has layers 0..%d", layer, m.NLayer-1)
	}
	return nil
}
