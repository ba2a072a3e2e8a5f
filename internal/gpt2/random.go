package gpt2

import (
	"math/rand/v2"

	"github.com/ctxdep/ctxdep/internal/kernels"
)

// Small returns GPT-2 small's configuration.
func Small() Config {
	return Config{NLayer: 12, NHead: 12, DModel: 768, DHead: 64, DMLP: 3072, NCtx: 1024, DVocab: 50257, Eps: kernels.LayerNormEps}
}

// Random returns a model of shape cfg with seeded N(0, 0.02²) weights
// (GPT-2's initialisation scale), already processed. It exists for
// benchmarks and size estimates: its activations have realistic shapes, not
// realistic values.
func Random(cfg Config, seed uint64) *Model {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	norm := func(n int, std float32) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = std * float32(r.NormFloat64())
		}
		return s
	}
	ones := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	c, n, v := cfg.DModel, cfg.DMLP, cfg.DVocab
	hf := &hfWeights{wte: norm(v*c, 0.02), wpe: norm(cfg.NCtx*c, 0.01), lnfW: ones(c), lnfB: norm(c, 0.02)}
	for l := 0; l < cfg.NLayer; l++ {
		hf.blocks = append(hf.blocks, hfBlock{
			ln1W: ones(c), ln1B: norm(c, 0.02),
			attnW: norm(c*3*c, 0.02), attnB: norm(3*c, 0.02),
			projW: norm(c*c, 0.02), projB: norm(c, 0.02),
			ln2W: ones(c), ln2B: norm(c, 0.02),
			fcW: norm(c*n, 0.02), fcB: norm(n, 0.02),
			outW: norm(n*c, 0.02), outB: norm(c, 0.02),
		})
	}
	return process(cfg, hf)
}

// RandomTokens returns n seeded token ids below vocab, for benchmarks.
func RandomTokens(n, vocab int, seed uint64) []int32 {
	r := rand.New(rand.NewPCG(seed, seed))
	tok := make([]int32, n)
	for i := range tok {
		tok[i] = int32(r.IntN(vocab))
	}
	return tok
}
