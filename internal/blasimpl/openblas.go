//go:build openblas

package blasimpl

/*
#cgo LDFLAGS: -lopenblas
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int num_threads);
#include <stddef.h>
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s,
	double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork,
	int* iwork, int* info, size_t jobz_len);
static int ctxdep_dgesdd(int m, int n, double* a, double* s, double* u, double* vt, double* work, int lwork, int* iwork) {
	int info = 0, k = m < n ? m : n;
	dgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, iwork, &info, 1);
	return info;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gonum.org/v1/netlib/blas/netlib"
)

// Built reports the backend compiled into this binary.
const Built = "openblas"

// implementation returns the build's BLAS: float32 for the model and
// float64 for the pinv baseline (and gonum's LAPACK, which calls blas64).
func implementation() (impl, Info) {
	// OpenBLAS itself runs single-threaded: kernels.MatMul splits rows over
	// goroutines, and attention runs many small GEMMs concurrently, which
	// OpenBLAS's own threads would contend for.
	C.openblas_set_num_threads(1)
	kernel := C.GoString(C.openblas_get_corename())
	return netlib.Implementation{}, Info{Backend: Built, Kernel: kernel}
}

// SVD returns the thin singular value decomposition a = U diag(σ) Vᵀ of a
// (m, n), row-major: σ descending (k = min(m, n)), U (m, k) and V (n, k)
// row-major. This build uses LAPACK's divide-and-conquer dgesdd from
// OpenBLAS (it ships LAPACK), several times faster than gonum's Go
// Dgesvd at the pinv baseline's 768 × 768.
func SVD(a []float64, m, n int) (sigma, u, v []float64, err error) {
	if len(a) != m*n || m == 0 || n == 0 {
		return nil, nil, nil, fmt.Errorf("svd: %d values for a %d×%d matrix", len(a), m, n)
	}
	// Row-major a is column-major aᵀ (n, m): decompose aᵀ = U' Σ V'ᵀ, so
	// a = V' Σ U'ᵀ. LAPACK's V'ᵀ (k, m) column-major is U (m, k)
	// row-major; its U' (n, k) column-major is Vᵀ (k, n) row-major.
	k := min(m, n)
	at := append([]float64(nil), a...) // dgesdd overwrites its input
	sigma, u = make([]float64, k), make([]float64, m*k)
	vT := make([]float64, k*n)
	iwork := make([]C.int, 8*k)
	run := func(work []float64, lwork int) C.int {
		return C.ctxdep_dgesdd(C.int(n), C.int(m), (*C.double)(unsafe.Pointer(&at[0])), (*C.double)(unsafe.Pointer(&sigma[0])),
			(*C.double)(unsafe.Pointer(&vT[0])), (*C.double)(unsafe.Pointer(&u[0])),
			(*C.double)(unsafe.Pointer(&work[0])), C.int(lwork), &iwork[0])
	}
	query := []float64{0}
	if info := run(query, -1); info != 0 {
		return nil, nil, nil, fmt.Errorf("svd: LAPACK dgesdd's workspace query failed (info %d)", info)
	}
	work := make([]float64, int(query[0])+1)
	if info := run(work, len(work)); info != 0 {
		return nil, nil, nil, fmt.Errorf("svd: LAPACK dgesdd did not converge (info %d) for the %d×%d matrix", info, m, n)
	}
	v = make([]float64, n*k)
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			v[j*k+i] = vT[i*n+j]
		}
	}
	return sigma, u, v, nil
}
