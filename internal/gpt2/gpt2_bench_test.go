package gpt2

import (
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
)

// BenchmarkRunToBlock8 measures the forward pass to block 8 at GPT-2-small
// shapes (random weights), B=32, T=128, with the build's BLAS
// (`go test -tags openblas` for OpenBLAS).
func BenchmarkRunToBlock8(b *testing.B) {
	info := blasimpl.Use(0) // already installed by TestMain; returns what is in use
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	m := Random(Small(), 1)
	const bs, t = 32, 128
	tok := RandomTokens(bs*t, m.DVocab, 2)
	ws := m.NewWorkspace(bs * t)
	for b.Loop() {
		if _, _, err := m.RunToBlock(ws, tok, bs, t, 8, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bs*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
