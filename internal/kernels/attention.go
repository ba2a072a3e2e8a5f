package kernels

import (
	"math"
	"runtime"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/ctxdep/ctxdep/internal/par"
)

// CausalAttention computes z from the fused projections qkv for every batch
// row b and head i:
//
//	score[p, s] = q[p]·k[s] / sqrt(D) for s ≤ p, −∞ otherwise
//	pattern     = softmax over s
//	z[p]        = Σ_s pattern[p, s] · v[s]
//
// qkv (B·T, 3·C) holds, per token, Q of all heads, then K, then V, head i
// at columns i·D … i·D+D−1 of each part; z (B·T, C) gets head i at the same
// columns. scratch must hold at least ScratchSize(T) floats per worker
// (len(scratch) / ScratchSize(T) workers are used, at least one).
func CausalAttention(z, qkv, scratch []float32, b, t, h, d int) {
	c := h * d
	checkLen("CausalAttention z", z, b*t*c)
	checkLen("CausalAttention qkv", qkv, b*t*3*c)
	workers := len(scratch) / ScratchSize(t)
	if workers < 1 {
		panic("kernels: CausalAttention scratch too small")
	}
	scale := float32(1 / math.Sqrt(float64(d)))
	par.Jobs(b*h, min(workers, runtime.GOMAXPROCS(0)), func(w, j int) {
		attendHead(z, qkv, scratch[w*ScratchSize(t):(w+1)*ScratchSize(t)], j/h, j%h, t, c, d, scale)
	})
}

// ScratchSize is the per-worker scratch CausalAttention needs for T
// positions: one block of scores, at most attnBlock × T.
func ScratchSize(t int) int { return min(t, attnBlock) * t }

// attnBlock is the row block of the causal attention: queries of block r
// only meet keys of blocks 0..r, which skips about a quarter of the work at
// T = 128 while each GEMM stays large enough for the BLAS.
const attnBlock = 64

func attendHead(z, qkv, scores []float32, bi, hi, t, c, d int, scale float32) {
	base := bi * t * 3 * c
	view := func(off, rows int) blas32.General { // rows of one head's Q, K or V
		return blas32.General{Rows: rows, Cols: d, Stride: 3 * c, Data: qkv[off : off+(rows-1)*3*c+d]}
	}
	for p0 := 0; p0 < t; p0 += attnBlock {
		rows := min(attnBlock, t-p0)
		keys := p0 + rows // causal: queries p0..p0+rows−1 see keys 0..keys−1
		q := view(base+p0*3*c+hi*d, rows)
		k := view(base+c+hi*d, keys)
		v := view(base+2*c+hi*d, keys)
		s := blas32.General{Rows: rows, Cols: keys, Stride: keys, Data: scores[:rows*keys]}
		blas32.Gemm(blas.NoTrans, blas.Trans, scale, q, k, 0, s)
		for i := 0; i < rows; i++ {
			causalSoftmaxRow(scores[i*keys:(i+1)*keys], p0+i)
		}
		off := (bi*t+p0)*c + hi*d
		out := blas32.General{Rows: rows, Cols: d, Stride: c, Data: z[off : off+(rows-1)*c+d]}
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, s, v, 0, out)
	}
}

// causalSoftmaxRow replaces row[0..p] by its softmax and zeroes row[p+1:].
func causalSoftmaxRow(row []float32, p int) {
	mx := row[0]
	for _, v := range row[1 : p+1] {
		mx = max(mx, v)
	}
	var sum float64
	for s := 0; s <= p; s++ {
		e := expf32(row[s] - mx)
		row[s] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for s := 0; s <= p; s++ {
		row[s] *= inv
	}
	clear(row[p+1:])
}

// CausalAttentionNaive is the reference for CausalAttention, written
// straight from the formula in float64.
func CausalAttentionNaive(z, qkv []float32, b, t, h, d int) {
	c := h * d
	for bi := 0; bi < b; bi++ {
		for hi := 0; hi < h; hi++ {
			for p := 0; p < t; p++ {
				q := qkv[(bi*t+p)*3*c+hi*d:]
				scores := make([]float64, p+1)
				mx := math.Inf(-1)
				for s := 0; s <= p; s++ {
					k := qkv[(bi*t+s)*3*c+c+hi*d:]
					var dot float64
					for e := 0; e < d; e++ {
						dot += float64(q[e]) * float64(k[e])
					}
					scores[s] = dot / math.Sqrt(float64(d))
					mx = math.Max(mx, scores[s])
				}
				var sum float64
				for s := range scores {
					scores[s] = math.Exp(scores[s] - mx)
					sum += scores[s]
				}
				for e := 0; e < d; e++ {
					var acc float64
					for s := 0; s <= p; s++ {
						acc += scores[s] / sum * float64(qkv[(bi*t+s)*3*c+2*c+hi*d+e])
					}
					z[(bi*t+p)*c+hi*d+e] = float32(acc)
				}
			}
		}
	}
}
