package kernels

// useGeluAsm selects the AVX2+FMA kernel in geluRange where this CPU and
// OS run it (hasAVX2FMA, cpu_amd64.go); tests switch it off to exercise
// geluGo on the same machine. It must stay false where hasAVX2FMA is.
var useGeluAsm = hasAVX2FMA

// geluAsm runs geluAVX2FMA over the leading multiple of 8 elements of src
// and returns how many it did. len(dst) ≥ len(src).
func geluAsm(dst, src []float32) int {
	n := len(src) &^ 7
	if n > 0 {
		geluAVX2FMA(dst[:n], src[:n])
	}
	return n
}

// geluAVX2FMA sets dst[i] = gelu_new(src[i]) for i < len(src)&^7, 8 lanes
// at a time; dst may alias src and must be at least as long.
//
//go:noescape
func geluAVX2FMA(dst, src []float32)
