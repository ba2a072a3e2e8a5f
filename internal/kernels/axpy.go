package kernels

import "gonum.org/v1/gonum/blas/gonum"

// level1 is gonum's pure-Go BLAS, whose Saxpy has an SSE kernel on amd64.
// The sparse products of the midcoder make hundreds of thousands of
// row-length AXPYs per step; through OpenBLAS each would pay a cgo call, so
// these stay in Go whatever BLAS the GEMMs use.
var level1 gonum.Implementation

// Axpy sets y += a·x. len(x) must equal len(y). As in BLAS, a == 0 leaves
// y as it is (even where x holds ±Inf or NaN, and −0 stays −0).
//
// On amd64 with AVX2 and FMA every element goes through an assembly kernel
// (axpy_amd64.s: 16 lanes per iteration, a block of 8 and a scalar tail);
// elsewhere through gonum's Saxpy. Both round a·x[i] and then the sum to
// float32, unfused, so they agree bit for bit, with each other and with a
// plain Go loop. A fused multiply-add would be no faster on these
// L1-resident rows, and it moves the midcoder's summed gradients by an ulp
// here and there: enough to put the first moments of the sparse trainer
// just outside TestSparseEqualsDense's tolerance against the dense
// reference.
func Axpy(y []float32, a float32, x []float32) {
	if len(x) != len(y) {
		panic("kernels: Axpy length mismatch")
	}
	if a == 0 {
		return
	}
	if useAxpyAsm {
		axpyAsm(y, a, x)
		return
	}
	axpyGo(y, a, x)
}

// axpyGo is the portable Axpy, gonum's Saxpy (whose SSE kernel is the
// fallback on amd64 CPUs without AVX2 and FMA).
func axpyGo(y []float32, a float32, x []float32) {
	if len(x) == 0 {
		return
	}
	level1.Saxpy(len(x), a, x, 1, y, 1)
}
