package kernels

import (
	"fmt"
	"runtime"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
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
	// The BLAS runs single-threaded (blasimpl); rows are split over
	// GOMAXPROCS goroutines here, which also keeps the small concurrent
	// GEMMs of attention from fighting over BLAS threads.
	parts := min(runtime.GOMAXPROCS(0), m/minRowsPerPart)
	if parts <= 1 {
		gemm(dst, a, b, m, k, n, beta)
		return
	}
	ParallelFor(parts, func(lo, hi int) {
		r0, r1 := lo*m/parts, hi*m/parts
		gemm(dst[r0*n:r1*n], a[r0*k:r1*k], b, r1-r0, k, n, beta)
	})
}

// minRowsPerPart is the fewest rows worth a goroutine of their own.
const minRowsPerPart = 64

func gemm(dst, a, b []float32, m, k, n int, beta float32) {
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: m, Cols: k, Stride: k, Data: a},
		blas32.General{Rows: k, Cols: n, Stride: n, Data: b},
		beta,
		blas32.General{Rows: m, Cols: n, Stride: n, Data: dst})
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
