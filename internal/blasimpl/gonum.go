//go:build !openblas

package blasimpl

import (
	"gonum.org/v1/gonum/blas/gonum"
)

// Built reports the backend compiled into this binary.
const Built = "gonum"

// implementation returns the build's BLAS: float32 for the model and
// float64 for the pinv baseline (and gonum's LAPACK, which calls blas64).
func implementation() (impl, Info) {
	// gonum's Sgemm splits work over GOMAXPROCS goroutines; the caller sets
	// GOMAXPROCS from --threads.
	return gonum.Implementation{}, Info{Backend: Built, Kernel: "pure-go"}
}
