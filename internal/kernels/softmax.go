package kernels

import (
	"math"

	"github.com/ctxdep/ctxdep/internal/par"
)

// CrossEntropyRows sets loss[i] = −log_softmax(logits[i])[target[i]] for
// each row (natural log, nats). The max and the exponentials are float32;
// the sum of exponentials is accumulated in float64, which keeps the result
// within a few float32 ulps of the exact value for V = 50,257.
// loss (M), logits (M, V), target (M).
//
// On amd64 with AVX2 and FMA the leading multiple of 8 logits of a row go
// through assembly kernels (ce_amd64.s): the maximum, and, when it is
// finite, the sum of exponentials (expf32's algorithm, 8 lanes, two
// float64 accumulators); the rest as below. The loss over the
// unembedding's logits was a sixth of evaluate's time on the CPU (a CPU
// profile of analysis' BenchmarkEvaluate, 2026-12-02);
// BenchmarkCrossEntropyRows times both paths in one run.
func CrossEntropyRows(loss, logits []float32, target []int32, m, v int) {
	checkLen("CrossEntropyRows loss", loss, m)
	checkLen("CrossEntropyRows logits", logits, m*v)
	if len(target) != m {
		panic("kernels: CrossEntropyRows target length mismatch")
	}
	par.For(m, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := logits[i*v : (i+1)*v]
			mx := rowMax(row)
			var sum float64
			n := 0
			if useExpSumAsm && !math.IsInf(float64(mx), 0) && mx == mx {
				n = len(row) &^ 7
				sum = expSumAVX2FMA(row[:n], mx)
			}
			for _, x := range row[n:] {
				sum += float64(expf(x - mx))
			}
			l := float64(mx) + math.Log(sum)
			loss[i] = float32(l - float64(row[target[i]]))
		}
	})
}

// rowMax returns the largest of row (len ≥ 1), NaN when one is NaN.
func rowMax(row []float32) float32 {
	mx, k := row[0], 0
	if useExpSumAsm && len(row) >= 8 {
		k = len(row) &^ 7
		var nan bool
		if mx, nan = maxAVX2(row[:k]); nan {
			return float32(math.NaN())
		}
	}
	for _, x := range row[k:] {
		mx = max(mx, x)
	}
	return mx
}

// CrossEntropyRowsNaive is the reference for CrossEntropyRows in float64
// with math.Exp.
func CrossEntropyRowsNaive(loss, logits []float32, target []int32, m, v int) {
	for i := 0; i < m; i++ {
		row := logits[i*v : (i+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, float64(x))
		}
		var sum float64
		for _, x := range row {
			sum += math.Exp(float64(x) - mx)
		}
		loss[i] = float32(mx + math.Log(sum) - float64(row[target[i]]))
	}
}
