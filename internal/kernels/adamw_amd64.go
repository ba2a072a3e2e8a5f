package kernels

// useAdamWAsm selects the assembly kernel in AdamWStep.Update; tests switch
// it off to exercise updateGo on the same machine. It must stay false where
// hasAVX2FMA is. adamwAVX needs only AVX; it is gated on hasAVX2FMA
// (cpu_amd64.go) with the other kernels, which every CPU with AVX since
// Haswell passes.
var useAdamWAsm = hasAVX2FMA

// updateAsm runs adamwAVX over the leading multiple of 8 elements and
// returns how many it did. The slices have Update's lengths.
func (k *AdamWStep) updateAsm(theta, m, v, g []float32) int {
	n := len(theta) &^ 7
	if n > 0 {
		if g != nil {
			g = g[:n]
		}
		adamwAVX(k, theta[:n], m[:n], v[:n], g)
	}
	return n
}

// adamwAVX applies k to theta[i], m[i], v[i] with gradient g[i] for
// i < len(theta)&^7, 8 lanes at a time, as updateGo does; a nil g (base
// pointer 0) means a zero gradient. m, v and g are at least as long as
// theta.
//
//go:noescape
func adamwAVX(k *AdamWStep, theta, m, v, g []float32)
