package kernels

import (
	"math"

	"github.com/ctxdep/ctxdep/internal/par"
)

// LayerNormEps is GPT-2's layer_norm_epsilon (config.json, 1e-5), added to
// the biased variance inside the square root as TransformerLens's LNPre does.
const LayerNormEps = 1e-5

// LayerNormPre sets each row of dst to (x − mean(x)) / sqrt(var(x) + eps),
// the parameter-free LayerNorm of TransformerLens (LNPre), with
// the biased variance. Sums are accumulated in float64. dst may alias src.
// dst, src (M, C).
func LayerNormPre(dst, src []float32, m, c int, eps float64) {
	checkLen("LayerNormPre dst", dst, m*c)
	checkLen("LayerNormPre src", src, m*c)
	par.For(m, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			layerNormRow(dst[i*c:(i+1)*c], src[i*c:(i+1)*c], eps)
		}
	})
}

func layerNormRow(dst, x []float32, eps float64) {
	mean, ss := rowMoments(x)
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	for j, v := range x {
		dst[j] = float32((float64(v) - mean) * inv)
	}
}

// LayerNormPreNaive is the reference for LayerNormPre: two plain passes,
// written straight from the formula.
func LayerNormPreNaive(dst, src []float32, m, c int, eps float64) {
	for i := 0; i < m; i++ {
		row := src[i*c : (i+1)*c]
		mean := 0.0
		for _, v := range row {
			mean += float64(v) / float64(c)
		}
		variance := 0.0
		for _, v := range row {
			variance += (float64(v) - mean) * (float64(v) - mean) / float64(c)
		}
		for j, v := range row {
			dst[i*c+j] = float32((float64(v) - mean) / math.Sqrt(variance+eps))
		}
	}
}

// rowMoments returns x's mean and its sum of squared deviations from it,
// in float64.
func rowMoments(x []float32) (mean, ss float64) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean = sum / float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	return mean, ss
}

// LayerNormScale sets scale (m) to TransformerLens's hook_scale of the
// LayerNorm applied to src (m, c): sqrt(mean((x − mean x)²) + eps) per
// row, what LayerNormPre divides the centred row by.
func LayerNormScale(scale, src []float32, m, c int, eps float64) {
	checkLen("LayerNormScale scale", scale, m)
	checkLen("LayerNormScale src", src, m*c)
	for r := 0; r < m; r++ {
		_, ss := rowMoments(src[r*c : (r+1)*c])
		scale[r] = float32(math.Sqrt(ss/float64(c) + eps))
	}
}

// CentreRows subtracts from each row of w (r, k) its mean, computed in
// float64 (TransformerLens's centring of writing weights and of the
// unembedding; the connections' centred decoder).
func CentreRows(w []float32, r, k int) {
	for m := 0; m < r; m++ {
		row := w[m*k : (m+1)*k]
		var s float64
		for _, v := range row {
			s += float64(v)
		}
		mean := s / float64(k)
		for j, v := range row {
			row[j] = float32(float64(v) - mean)
		}
	}
}
