package analysis

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// effectBench is one batch of the report at GPT-2-small shapes (C = 768,
// N = 3,072, F = 24,576, random weights), ReportRows tokens with 40
// active features each, and the fitted midcoder's pre-activations; with
// the accumulators built once for all the benchmarks below.
type effectBench struct {
	mlp       *midcoder.MLP
	fit, pinv *midcoder.Params
	acts      *transcoder.Acts
	pre       []float32
	fitOnly   *EffectAccumulator
	withPinv  *EffectAccumulator
	build     time.Duration // NewEffectAccumulator with pinv: the drives' GEMMs
}

var (
	effectBenchOnce sync.Once
	effectBenchData *effectBench
)

const effectBenchActive = 40

func effectBenchSetup(b *testing.B) *effectBench {
	info := blasimpl.Use(0)
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	effectBenchOnce.Do(func() {
		const c, n, f, m = 768, 3072, 24576, ReportRows
		r := rand.New(rand.NewPCG(11, 12))
		mlp := &midcoder.MLP{C: c, N: n, WIn: testutil.RandNormal(r, c*n, 0.036), BIn: testutil.RandNormal(r, n, 0.1),
			WOut: testutil.RandNormal(r, n*c, 0.018), BOut: make([]float32, c)}
		fit, pinv := midcoder.NewParams(f, c), midcoder.NewParams(f, c)
		fit.KaimingUniform(1)
		pinv.KaimingUniform(2)
		acts := &transcoder.Acts{Indptr: []int64{0}}
		for t := 0; t < m; t++ {
			seen := map[int32]bool{}
			for len(seen) < effectBenchActive {
				seen[int32(r.IntN(f))] = true
			}
			for j := int32(0); j < f; j++ {
				if seen[j] {
					acts.Indices = append(acts.Indices, j)
					acts.Values = append(acts.Values, float32(r.Float64()*2))
				}
			}
			acts.Indptr = append(acts.Indptr, int64(len(acts.Indices)))
		}
		md := midcoder.NewModel(mlp, fit, m)
		pre := append([]float32(nil), md.PreActivations(acts)...)
		d := &effectBench{mlp: mlp, fit: fit, pinv: pinv, acts: acts, pre: pre}
		var err error
		if d.fitOnly, err = NewEffectAccumulator(mlp, fit, nil, nil); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if d.withPinv, err = NewEffectAccumulator(mlp, fit, pinv, testutil.RandNormal(r, f*c, 0.036)); err != nil {
			b.Fatal(err)
		}
		d.build = time.Since(start)
		effectBenchData = d
	})
	b.Logf("NewEffectAccumulator with pinv (two %d × %d × %d drive GEMMs): %v", 24576, 768, 3072, effectBenchData.build)
	return effectBenchData
}

// BenchmarkEffectReportPass is what Report does per batch today: the
// midcoder's pre-activations and the gating counts over top-8 neurons (the
// neurons drawn at random: the counting does not depend on which). It is
// the baseline that BenchmarkEffectAdd's cost is quoted against.
func BenchmarkEffectReportPass(b *testing.B) {
	d := effectBenchSetup(b)
	const k = 8
	f, n := d.fit.F, d.mlp.N
	r := rand.New(rand.NewPCG(13, 14))
	neurons := make([]int32, f*k)
	for i := range neurons {
		neurons[i] = int32(r.IntN(n))
	}
	count, first, on := make([]int64, f), make([]int64, f), make([]int64, f*k)
	md := midcoder.NewModel(d.mlp, d.fit, ReportRows)
	b.ResetTimer()
	for b.Loop() {
		accumulate(d.acts, md.PreActivations(d.acts), n, neurons, k, 128, count, first, on)
	}
	b.ReportMetric(float64(d.acts.Rows())*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEffectAdd is the effect accumulator on the same batch (pre
// given, as Report already has it): fit alone, and with the pinv baseline
// (whose sums add each pair's gate, N additions, and multiply at Result:
// BenchmarkEffectResult). GFLOP/s counts the fitted midcoder's products
// with W_out, 2·N·C per (token, feature) pair.
func BenchmarkEffectAdd(b *testing.B) {
	d := effectBenchSetup(b)
	for _, bc := range []struct {
		name string
		ea   *EffectAccumulator
	}{{"fit", d.fitOnly}, {"fit+pinv", d.withPinv}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.ea.Add(d.acts, d.pre)
			}
			tokens := float64(d.acts.Rows()) * float64(b.N)
			flops := tokens * effectBenchActive * 2 * float64(d.mlp.N) * float64(d.mlp.C)
			b.ReportMetric(tokens/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkEffectResult is Result with the pinv baseline after one batch:
// the pinv sums' float64 product (d^pinv ⊙ Γ) @ W_out over the features
// that fired, once per report.
func BenchmarkEffectResult(b *testing.B) {
	d := effectBenchSetup(b)
	ea, err := NewEffectAccumulator(d.mlp, d.fit, d.pinv, nil)
	if err != nil {
		b.Fatal(err)
	}
	ea.Add(d.acts, d.pre)
	fired := 0
	for _, k := range ea.count {
		if k > 0 {
			fired++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		ea.Result()
	}
	b.ReportMetric(float64(fired), "features")
}
