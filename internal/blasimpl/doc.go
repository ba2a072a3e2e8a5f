// Package blasimpl chooses the BLAS implementation (float32 and float64)
// once, at start-up, for the whole process: gonum's pure-Go BLAS (the
// default build) or OpenBLAS through gonum.org/v1/netlib (build tag
// openblas, cgo, Debian's libopenblas-dev). Library code calls blas32 (the
// model, the midcoder) or blas64 (the pinv baseline; gonum's LAPACK) and
// never chooses. SVD is the build's float64 SVD: LAPACK's dgesdd from
// OpenBLAS, or gonum's Dgesvd in the pure-Go build.
//
// Only cmd/ctxdep, tests and benchmarks call Use.
package blasimpl
