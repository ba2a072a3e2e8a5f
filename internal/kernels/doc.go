// Package kernels holds the float32 building blocks of the forward pass:
// GEMM through gonum's blas32 (whose implementation blasimpl picks at
// start-up), LayerNorm without affine parameters, gelu_new, causal
// attention, log-softmax cross-entropy, and a parallel-for over rows.
//
// Shape key: M rows (tokens, B·T), K inner, N columns; B batch, T positions,
// H heads, D head size, C = H·D model width, V vocabulary.
//
// Matrices are row-major []float32 of exactly the stated size. Destination
// first, then inputs, then dimensions. Shape mismatches are programmer
// errors and panic with a "kernels:" message.
//
// Invariants: MatMul cuts a product into parts by its shape alone, never
// by GOMAXPROCS or the machine, and computes each part as one BLAS call,
// so its bits do not depend on GOMAXPROCS (a cut that followed the thread
// count would change them: BLAS kernels round an element according to its
// place in the call). The other kernels give each element, row, or batch
// row and head to one goroutine and sum in a fixed order, so their bits do
// not depend on it either; which elements GeluNew and CrossEntropyRows
// send through their assembly kernels follows the length alone. Every fast kernel has a
// reference that the tests, fuzz tests included, compare it against:
// MatMulNaive, GeluNewNaive, LayerNormPreNaive, CausalAttentionNaive and
// CrossEntropyRowsNaive within stated tolerances, GeluNewBackward a
// central difference. AdamWStep.Update's assembly kernel equals its Go
// path bit for bit, and Axpy equals y + a·x with product and sum rounded
// separately, bit for bit on every path; GeluNew's kernel and Go path
// differ only in rounding, within a bound relative to the result that the
// tests check, and so do CrossEntropyRows' (within its reference's
// tolerance). GeluNew, Axpy and AdamWStep.Update specify what NaN and
// ±Inf give; the other kernels expect finite inputs.
package kernels
