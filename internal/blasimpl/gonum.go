//go:build !openblas

package blasimpl

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Built reports the backend compiled into this binary.
const Built = "gonum"

func implementation() (blas.Float32, Info) {
	// gonum's Sgemm splits work over GOMAXPROCS goroutines; the caller sets
	// GOMAXPROCS from --threads.
	return gonum.Implementation{}, Info{Backend: Built, Kernel: "pure-go"}
}
