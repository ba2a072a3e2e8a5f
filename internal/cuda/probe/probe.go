//go:build cuda

package probe

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
static int probe_init(const char** msg) {
	CUresult r = cuInit(0);
	if (r != CUDA_SUCCESS) { cuGetErrorString(r, msg); return (int)r; }
	int n = 0;
	r = cuDeviceGetCount(&n);
	if (r != CUDA_SUCCESS) { cuGetErrorString(r, msg); return (int)r; }
	return n == 0 ? -1 : 0;
}
*/
import "C"

import (
	"fmt"
	"os"
)

func init() {
	var msg *C.char
	switch r := C.probe_init(&msg); {
	case r == 0:
		return
	case r == -1:
		fmt.Fprintln(os.Stderr, "ctxdep: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES); this ctxdep was built with CUDA and needs a GPU to start: use a build without CUDA (make build) on the CPU")
	default:
		reason := "unknown error"
		switch {
		case r == C.CUDA_ERROR_STUB_LIBRARY:
			reason = "libcuda.so.1 is CUDA's link stub, not the NVIDIA driver's library"
		case r == C.CUDA_ERROR_NO_DEVICE:
			reason = "no CUDA-capable device is detected"
		case msg != nil:
			reason = C.GoString(msg)
		}
		fmt.Fprintf(os.Stderr, "ctxdep: the NVIDIA driver did not initialise (CUDA error %d: %s); this ctxdep was built with CUDA and needs a working GPU driver to start: check nvidia-smi, or use a build without CUDA (make build) on the CPU\n", int(r), reason)
	}
	os.Exit(1)
}
