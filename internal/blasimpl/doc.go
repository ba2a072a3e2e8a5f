// Package blasimpl chooses the float32 BLAS implementation once, at
// start-up, for the whole process: gonum's pure-Go blas32 (the default
// build) or OpenBLAS through gonum.org/v1/netlib (build tag openblas, cgo,
// Debian's libopenblas-dev). Library code calls blas32 and never chooses.
//
// Only cmd/ctxdep, tests and benchmarks call Use.
package blasimpl
