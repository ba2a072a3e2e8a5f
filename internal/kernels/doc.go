// Package kernels holds the float32 building blocks of the forward pass:
// GEMM through gonum's blas32 (whose implementation blasimpl picks at
// start-up), LayerNorm without affine parameters, gelu_new, causal
// attention, log-softmax cross-entropy, and a parallel-for over rows.
//
// Shape key: M rows (tokens, B·T), K inner, N columns; B batch, T positions,
// H heads, D head size, C = H·D model width, V vocabulary.
//
// Matrices are row-major []float32 of exactly the stated size. Destination
// first, then inputs, then dimensions. Every fast kernel has a naive
// reference next to it (…Naive) that the tests compare against. Shape
// mismatches are programmer errors and panic with a "kernels:" message.
package kernels
