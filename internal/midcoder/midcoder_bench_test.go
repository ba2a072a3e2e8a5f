package midcoder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// benchSetup builds GPT-2-small-shaped inputs: F = 24,576 features, C =
// 768, N = 3,072, about l0 active features per token (random indices,
// |N(0,1)| values), B·128 tokens, random MLP weights and targets.
func benchSetup(b *testing.B, batch, l0 int) (*Trainer, *transcoder.Acts, []float32) {
	const f, c, n, t = 24576, 768, 3072, 128
	r := rand.New(rand.NewPCG(1, 2))
	norm := func(k int, std float64) []float32 { return testutil.RandNormal(r, k, std) }
	mlp := newMLP(norm(c*n, 0.03), norm(n, 0.1), norm(n*c, 0.03), norm(c, 0.1), c, n, ReLU)
	p := NewParams(f, c)
	p.KaimingUniform(1)
	m := batch * t
	acts := &transcoder.Acts{Indptr: []int64{0}}
	idx := make([]int32, l0)
	for row := 0; row < m; row++ {
		for i := range idx {
			idx[i] = int32(r.IntN(f))
		}
		slices.Sort(idx) // ascending, as the encoder emits; duplicates dropped
		for i, j := range idx {
			if i == 0 || j != idx[i-1] {
				acts.Indices = append(acts.Indices, j)
				acts.Values = append(acts.Values, float32(r.ExpFloat64()))
			}
		}
		acts.Indptr = append(acts.Indptr, int64(len(acts.Indices)))
	}
	return NewTrainer(mlp, p, NewAdamW(p, 1e-3), m), acts, norm(m*c, 1)
}

// BenchmarkStep measures one midcoder training step from a cache (sparse
// forward, backward, AdamW over all 18.9 M parameters) against the dense
// reference path (PyTorch's formulation) in the same run.
func BenchmarkStep(b *testing.B) {
	for _, batch := range []int{32, 64} {
		tr, acts, y := benchSetup(b, batch, 100)
		b.Run(fmt.Sprintf("sparse/B=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tr.Step(acts, y, 1e-3)
			}
			b.ReportMetric(float64(acts.Rows()*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
		b.Run(fmt.Sprintf("dense/B=%d", batch), func(b *testing.B) {
			for b.Loop() {
				tr.DenseStep(acts, y, 1e-3)
			}
			b.ReportMetric(float64(acts.Rows()*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkStepParts measures the sparse step's own work beside its four
// GEMMs, at B = 64: the gather of mid from W_mid's active rows, and the
// update (the scatter of W_mid's gradient rows and AdamW over all of W_mid).
func BenchmarkStepParts(b *testing.B) {
	tr, acts, y := benchSetup(b, 64, 100)
	_, _, dmid := tr.backward(acts, y)
	b.Run("gather", func(b *testing.B) {
		for b.Loop() {
			tr.gather(acts)
		}
	})
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			tr.update(acts, dmid, 1e-3)
		}
	})
}

// BenchmarkStreamStep measures the notebook's whole step from token ids:
// the forward pass to block 8, the encoder and the midcoder step, at
// GPT-2-small shapes (random weights, ~100 active features), B = 64,
// T = 128, with the next batch's forward overlapped with the step.
func BenchmarkStreamStep(b *testing.B) {
	const batch, t = 64, 128
	m := gpt2.Random(gpt2.Small(), 1)
	tc := transcoder.Random(m.DModel, 24576, 100, 2)
	tok := gpt2.RandomTokens(256*t, m.DVocab, 3)
	row := 0
	next := func(dst []int32) error {
		copy(dst, tok[(row%256)*t:])
		row++
		return nil
	}
	src := NewStreamSource(m, 8, tc, next, t, batch)
	defer src.Close()
	p := NewParams(24576, m.DModel)
	p.KaimingUniform(1)
	tr := NewTrainer(NewMLP(m, 8, ReLU), p, NewAdamW(p, 1e-3), batch*t)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		acts, y, err := src.Next(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		tr.Step(acts, y, 1e-3)
	}
	b.ReportMetric(float64(batch*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
