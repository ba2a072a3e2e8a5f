package cachebuild

import (
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// BenchmarkForwardEncode measures what `cache build --with-acts` computes
// per batch: the forward pass to block 8 and the transcoder encoder with
// compaction, at GPT-2-small shapes (random weights), B=32, T=128.
// scripts/bench.sh runs it beside scripts/bench_torch.py, for a PyTorch
// figure measured on the same machine in the same run.
func BenchmarkForwardEncode(b *testing.B) {
	info := blasimpl.Use(0) // already installed by TestMain; returns what is in use
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	m := gpt2.Random(gpt2.Small(), 1)
	tc := transcoder.Random(m.DModel, 24576, 100, 2)
	const bs, t = 32, 128
	tok := gpt2.RandomTokens(bs*t, m.DVocab, 3)
	ws := m.NewWorkspace(bs * t)
	enc := tc.NewEncoder()
	var acts transcoder.Acts
	for b.Loop() {
		x, _, err := m.RunToBlock(ws, tok, bs, t, 8, nil)
		if err != nil {
			b.Fatal(err)
		}
		enc.Encode(&acts, x, bs*t)
	}
	b.ReportMetric(float64(bs*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(len(acts.Indices))/(bs*t), "l0")
}
