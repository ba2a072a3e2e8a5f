//go:build !amd64

package kernels

// Without an assembly kernel for this architecture AdamWStep.Update is
// updateGo only.
var useAdamWAsm = false

func (k *AdamWStep) updateAsm(theta, m, v, g []float32) int { return 0 }
