package kernels

// useAxpyAsm selects the assembly kernel in Axpy; tests switch it off to
// exercise axpyGo on the same machine. It must stay false where hasAVX2FMA
// is. axpyAVX needs only AVX; it is gated on hasAVX2FMA (cpu_amd64.go)
// with the other kernels.
var useAxpyAsm = hasAVX2FMA

// axpyAsm is axpyAVX; len(x) == len(y).
func axpyAsm(y []float32, a float32, x []float32) { axpyAVX(y, a, x) }

// axpyAVX sets y[i] = y[i] + a·x[i] (product and sum each rounded) for
// i < len(y): 16 lanes per iteration, then a block of 8, then one at a
// time. x is at least as long as y and may alias it exactly.
//
//go:noescape
func axpyAVX(y []float32, a float32, x []float32)
