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
func CrossEntropyRows(loss, logits []float32, target []int32, m, v int) {
	checkLen("CrossEntropyRows loss", loss, m)
	checkLen("CrossEntropyRows logits", logits, m*v)
	if len(target) != m {
		panic("kernels: CrossEntropyRows target length mismatch")
	}
	par.For(m, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := logits[i*v : (i+1)*v]
			mx := row[0]
			for _, x := range row {
				mx = max(mx, x)
			}
			var sum float64
			for _, x := range row {
				sum += float64(expf(x - mx))
			}
			l := float64(mx) + math.Log(sum)
			loss[i] = float32(l - float64(row[target[i]]))
		}
	})
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
