package blasimpl

import (
	"runtime"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// impl is a BLAS of both precisions.
type impl interface {
	blas.Float32
	blas.Float64
}

// Info describes the BLAS in use.
type Info struct {
	Backend string // "gonum" (pure Go) or "openblas"
	Kernel  string // the kernel OpenBLAS picked for this CPU, or "pure-go"
	Threads int    // the threads Use was given, for reports
}

// Use installs the build's BLAS as blas32's and blas64's implementation
// and returns what is now in use, with threads (0 means all cores)
// recorded in Info.Threads.
// It limits nothing itself: OpenBLAS always runs single-threaded, and
// gonum's Sgemm and kernels.MatMul use GOMAXPROCS goroutines, which the
// CLI sets from --threads.
func Use(threads int) Info {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	impl, info := implementation()
	info.Threads = threads
	blas32.Use(impl)
	blas64.Use(impl)
	return info
}
