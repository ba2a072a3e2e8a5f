package kernels

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/ctxdep/ctxdep/internal/par"
)

// MatMul sets dst = a @ b, or dst += a @ b when accumulate is set.
// dst (M, N), a (M, K), b (K, N).
func MatMul(dst, a, b []float32, m, k, n int, accumulate bool) {
	checkLen("MatMul dst", dst, m*n)
	checkLen("MatMul a", a, m*k)
	checkLen("MatMul b", b, k*n)
	if m == 0 || n == 0 {
		return
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if k == 0 {
		if !accumulate {
			clear(dst)
		}
		return
	}
	matMulSplit(dst, a, b, m, k, n, beta, splitFor(m, n))
}

// A split cuts a product into parts of whole rows (rows > 1) or whole
// columns (cols > 1) of dst, computed concurrently; at most one is above 1.
type split struct{ rows, cols int }

// splitFor returns how MatMul cuts an (m, n) product: along its longer
// side, into parts of at least partMin rows or columns, at most maxParts
// of them. The cut depends on the shape alone, never on GOMAXPROCS or the
// machine. That is what makes results reproducible bit for bit across
// machines and thread counts: BLAS kernels (OpenBLAS's Haswell sgemm, for
// one) round an element differently depending on where its row or column
// falls within the call and how many rows or columns the call has, so a
// cut that followed the thread count would give other bits on a machine
// with other cores. The parts are then spread over GOMAXPROCS goroutines.
func splitFor(m, n int) split {
	if n > m {
		return split{cols: max(1, min(maxParts, n/partMin))}
	}
	return split{rows: max(1, min(maxParts, m/partMin))}
}

// partMin is the fewest rows or columns worth a part of their own, and
// maxParts the most parts one product is cut into: enough to keep 16
// cores busy, and each part still a large GEMM (a part re-packs the
// operand it shares with the others).
const (
	partMin  = 256
	maxParts = 8
)

// matMulSplit sets dst = a @ b + beta·dst, computing the parts of sp
// concurrently. OpenBLAS runs single-threaded (blasimpl): the product is
// split here, which also lets attention run its many small GEMMs
// concurrently without BLAS threads contending. gonum's Sgemm also spreads
// a large product over GOMAXPROCS goroutines itself, beneath this split;
// its sums run in the same order however it cuts.
func matMulSplit(dst, a, b []float32, m, k, n int, beta float32, sp split) {
	switch {
	case sp.cols > 1:
		par.For(sp.cols, func(lo, hi int) {
			for q := lo; q < hi; q++ {
				c0, c1 := q*n/sp.cols, (q+1)*n/sp.cols
				gemmStrided(dst[c0:], a, b[c0:], m, k, c1-c0, n, beta)
			}
		})
	case sp.rows > 1:
		par.For(sp.rows, func(lo, hi int) {
			for q := lo; q < hi; q++ {
				r0, r1 := q*m/sp.rows, (q+1)*m/sp.rows
				gemmStrided(dst[r0*n:], a[r0*k:], b, r1-r0, k, n, n, beta)
			}
		})
	default:
		gemmStrided(dst, a, b, m, k, n, n, beta)
	}
}

// gemmStrided sets the (m, n) block of dst with row stride ld to
// a (m, k) @ the (k, n) block of b with row stride ld, plus beta·dst.
func gemmStrided(dst, a, b []float32, m, k, n, ld int, beta float32) {
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: m, Cols: k, Stride: k, Data: a[:m*k]},
		blas32.General{Rows: k, Cols: n, Stride: ld, Data: b[:(k-1)*ld+n]},
		beta,
		blas32.General{Rows: m, Cols: n, Stride: ld, Data: dst[:(m-1)*ld+n]})
}

// Linear sets dst = a @ w + bias (bias broadcast over rows; nil means no
// bias). dst (M, N), a (M, K), w (K, N), bias (N).
func Linear(dst, a, w, bias []float32, m, k, n int) {
	checkLen("Linear dst", dst, m*n)
	if bias == nil {
		MatMul(dst, a, w, m, k, n, false)
		return
	}
	checkLen("Linear bias", bias, n)
	for i := 0; i < m; i++ {
		copy(dst[i*n:(i+1)*n], bias)
	}
	MatMul(dst, a, w, m, k, n, true)
}

// MatMulNaive is the reference for MatMul: a triple loop accumulating in
// float64.
func MatMulNaive(dst, a, b []float32, m, k, n int, accumulate bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			if accumulate {
				s = float64(dst[i*n+j])
			}
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			dst[i*n+j] = float32(s)
		}
	}
}

func checkLen(what string, s []float32, want int) {
	if len(s) != want {
		panic(fmt.Sprintf("kernels: %s has length %d, want %d", what, len(s), want))
	}
}

// Transpose returns the (K, R) transpose of w (R, K).
func Transpose(w []float32, r, k int) []float32 {
	out := make([]float32, len(w))
	const tile = 32
	for i0 := 0; i0 < r; i0 += tile {
		for j0 := 0; j0 < k; j0 += tile {
			for i := i0; i < min(i0+tile, r); i++ {
				for j := j0; j < min(j0+tile, k); j++ {
					out[j*r+i] = w[i*k+j]
				}
			}
		}
	}
	return out
}
