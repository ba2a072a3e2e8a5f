package kernels

// hasAVX2FMA reports whether this CPU and OS run the AVX2+FMA kernels
// (gelu_amd64.s, adamw_amd64.s, axpy_amd64.s, ce_amd64.s): CPUID.1:ECX has FMA
// (bit 12), AVX (28) and OSXSAVE (27), XCR0 has the SSE and AVX state
// enabled (bits 1 and 2, so the OS saves the YMM registers), and
// CPUID.(7,0):EBX has AVX2 (bit 5): the checks of the Intel SDM vol. 1,
// "Detection of Intel AVX instructions" and of FMA, as golang.org/x/sys/cpu
// makes them. Our own CPUID/XGETBV (gelu_amd64.s) keep x/sys out of the
// module for four bits.
var hasAVX2FMA = haveAVX2FMA()

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

// cpuid and xgetbv are in gelu_amd64.s.

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

func xgetbv() (eax, edx uint32)
