package analysis

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// benchCache builds a cache of 16 sequences of 128 tokens at GPT-2-small
// shapes (random weights), layer 8, with stored acts (~100 active features
// per token), and a random midcoder.
func benchCache(b *testing.B) (*gpt2.Model, *transcoder.Transcoder, *actcache.Cache, *midcoder.Params) {
	info := blasimpl.Use(0)
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	m := gpt2.Random(gpt2.Small(), 1)
	tc := transcoder.Random(m.DModel, 24576, 100, 2)
	const rows, t = 16, 128
	dir := filepath.Join(b.TempDir(), "cache")
	_, err := cachebuild.Build(context.Background(), cachebuild.Options{Layers: []cachebuild.Layer{{Layer: 8, Out: dir, Transcoder: tc}}, Model: m,
		Rows: cachebuild.Int32Rows{Data: gpt2.RandomTokens(rows*t, m.DVocab, 3), T: t}, DataKind: "bench",
		BatchSize: 8, PerShard: rows, DType: "float32"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	p := midcoder.NewParams(tc.DSAE, m.DModel)
	p.KaimingUniform(4)
	return m, tc, c, p
}

// BenchmarkEvaluate measures evaluate with one midcoder: per batch, the
// blocks up to 8 once, then four continuations (clean, transcoder,
// midcoder, zero ablation) through blocks 9–11 and the unembedding.
// tokens/s counts cached tokens, each evaluated four ways.
func BenchmarkEvaluate(b *testing.B) {
	m, tc, c, p := benchCache(b)
	mids := []Midcoder{{File: "bench", Params: p, MLP: midcoder.NewMLP(m, 8, midcoder.ReLU)}}
	pass := NewCPUEvalPass(m, c.Manifest.Layer, tc, mids, c.Manifest.ContextLength)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Evaluate(context.Background(), pass, c, mids, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Manifest.NTokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkReport measures the report's statistics pass (stored acts,
// top-8 neurons of all 24,576 features, gating counts), to set against the
// forward pass's tokens/s (BenchmarkRunToBlock8 in internal/gpt2).
func BenchmarkReport(b *testing.B) {
	m, _, c, p := benchCache(b)
	in := ReportInput{Cache: c, MLP: midcoder.NewMLP(m, 8, midcoder.ReLU), Fit: p, Pinv: p, TopK: 8}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Report(context.Background(), in, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Manifest.NTokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
