//go:build !amd64

package kernels

// hasAVX2FMA is false: this architecture has no assembly kernels.
const hasAVX2FMA = false
