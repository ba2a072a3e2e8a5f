//go:build openblas

package blasimpl

/*
#cgo LDFLAGS: -lopenblas
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int num_threads);
*/
import "C"

import (
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
