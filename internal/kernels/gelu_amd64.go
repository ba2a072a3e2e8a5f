package kernels

// geluAsmSupported reports whether this CPU and OS run the AVX2+FMA kernel:
// CPUID.1:ECX has FMA (bit 12), AVX (28) and OSXSAVE (27), XCR0 has the
// SSE and AVX state enabled (bits 1 and 2, so the OS saves the YMM
// registers), and CPUID.(7,0):EBX has AVX2 (bit 5): the checks of the Intel
// SDM vol. 1, "Detection of Intel AVX instructions" and of FMA, as
// golang.org/x/sys/cpu makes them. Our own CPUID/XGETBV (gelu_amd64.s) keep
// x/sys out of the module for four bits.
var geluAsmSupported = haveAVX2FMA()

// useGeluAsm selects the assembly kernel in geluRange; tests switch it off
// to exercise geluGo on the same machine. It must stay false where
// geluAsmSupported is.
var useGeluAsm = geluAsmSupported

func haveAVX2FMA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}

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

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

func xgetbv() (eax, edx uint32)
