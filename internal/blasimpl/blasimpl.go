package blasimpl

import (
	"runtime"

	"gonum.org/v1/gonum/blas/blas32"
)

// Info describes the BLAS in use.
type Info struct {
	Backend string // "gonum" (pure Go) or "openblas"
	Kernel  string // the kernel OpenBLAS picked for this CPU, or "pure-go"
	Threads int    // threads the BLAS may use
}

// Use installs the build's BLAS as blas32's implementation and limits it to
// threads threads (0 means all cores). It returns what is now in use.
func Use(threads int) Info {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	impl, info := implementation(threads)
	blas32.Use(impl)
	return info
}
