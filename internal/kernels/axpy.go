package kernels

import "gonum.org/v1/gonum/blas/gonum"

// level1 is gonum's pure-Go BLAS, whose Saxpy has an SSE kernel on amd64.
// The sparse products of the midcoder make hundreds of thousands of
// row-length AXPYs per step; through OpenBLAS each would pay a cgo call, so
// these stay in Go whatever BLAS the GEMMs use.
var level1 gonum.Implementation

// Axpy sets y += a·x. len(x) must equal len(y).
func Axpy(y []float32, a float32, x []float32) {
	if len(x) != len(y) {
		panic("kernels: Axpy length mismatch")
	}
	if len(x) == 0 {
		return
	}
	level1.Saxpy(len(x), a, x, 1, y, 1)
}
