//go:build !amd64

package kernels

// Without an assembly kernel for this architecture Axpy is axpyGo only.
var useAxpyAsm = false

func axpyAsm(y []float32, a float32, x []float32) { axpyGo(y, a, x) }
