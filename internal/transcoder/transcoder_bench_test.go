package transcoder

import (
	"math/rand/v2"
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/kernels"
)

// BenchmarkEncode measures the encoder 768 → 24,576 with compaction to
// sparse activations, B·T = 32·128 tokens, ~100 active features per token.
func BenchmarkEncode(b *testing.B) {
	info := blasimpl.Use(0) // already installed by TestMain; returns what is in use
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	const m, c, f = 32 * 128, 768, 24576
	tc := Random(c, f, 100, 1)
	x := make([]float32, m*c)
	r := rand.New(rand.NewPCG(3, 3))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	kernels.LayerNormPre(x, x, m, c, kernels.LayerNormEps)
	enc := tc.NewEncoder()
	var acts Acts
	b.ResetTimer()
	for b.Loop() {
		enc.Encode(&acts, x, m)
	}
	b.ReportMetric(float64(m*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(len(acts.Indices))/m, "l0")
}
