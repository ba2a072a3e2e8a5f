//go:build !openblas

package blasimpl

import (
	"fmt"

	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/mat"
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

// SVD returns the thin singular value decomposition a = U diag(σ) Vᵀ of a
// (m, n), row-major: σ descending (k = min(m, n)), U (m, k) and V (n, k)
// row-major. This build uses gonum's Dgesvd.
func SVD(a []float64, m, n int) (sigma, u, v []float64, err error) {
	if len(a) != m*n || m == 0 || n == 0 {
		return nil, nil, nil, fmt.Errorf("svd: %d values for a %d×%d matrix", len(a), m, n)
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(m, n, append([]float64(nil), a...)), mat.SVDThin) {
		return nil, nil, nil, fmt.Errorf("svd: the SVD of the %d×%d matrix did not converge", m, n)
	}
	var ud, vd mat.Dense
	svd.UTo(&ud)
	svd.VTo(&vd)
	return svd.Values(nil), ud.RawMatrix().Data, vd.RawMatrix().Data, nil
}
