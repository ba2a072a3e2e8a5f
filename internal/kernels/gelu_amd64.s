#include "textflag.h"
#include "expf32_amd64.h"

// gelu_new on 8 float32 lanes with AVX2 and FMA: the algorithm of geluGo
// (gelu.go) and expf32, vectorised. For x in Y0:
//
//	z = −2·√(2/π)·(x + 0.044715·x³), clamped to [−87, 89]
//	t = z·log2e + 1.5·2^23         (round to nearest: the low bits of t are n)
//	n = t − 1.5·2^23
//	r = z − n·ln2hi − n·ln2lo      (Cody–Waite, |r| ≤ ln2/2)
//	p = Σ_{k≤7} r^k/k!             (Horner; truncation < 5e-9 relative)
//	2^n = (bits(t) << 23) + bits(1.0)  (bits(1.5·2^23)<<23 ≡ 0 mod 2^32)
//	x / (1 + p·2^n)
//
// The upper clamp is 89 rather than expf32's 88 so that z ≥ 88.38 gives
// n = 128, whose exponent field 255 with p > 0 makes e^z = +Inf and the
// result −0 for finite x (the true |gelu_new(x)| < 1e-37 there); geluGo
// does the same for z > 88, so the two can differ by < 1e-37 absolute for
// z in (88, 88.38). NaN x gives NaN through the final division whatever the
// clamps did with it; ±Inf x gives z = ∓Inf, clamped, so +Inf → +Inf/1 and
// −Inf → −Inf/+Inf = NaN.

//   0: 0.044715 (TransformerLens gelu_new)
VEC8(geluconst<>, 0, $0x3d372713)
//  32: −2·√(2/π) = −1.5957691 (twice geluSqrt2OverPi, exact in binary)
VEC8(geluconst<>, 32, $0xbfcc422a)
//  64: −87: e^z stays a normal float32 (expf32's lower clamp)
VEC8(geluconst<>, 64, $0xc2ae0000)
//  96: 89: n = 128 from z ≥ 88.38 makes 2^n the +Inf bit pattern
VEC8(geluconst<>, 96, $0x42b20000)
// 128: log2(e) = 1.44269504
VEC8(geluconst<>, 128, $0x3fb8aa3b)
// 160: 1.5·2^23: adding it rounds to an integer
VEC8(geluconst<>, 160, $0x4b400000)
// 192: 0.693359375, ln2 with few bits (Cody–Waite)
VEC8(geluconst<>, 192, $0x3f318000)
// 224: −2.12194440e-4 = ln2 − ln2hi
VEC8(geluconst<>, 224, $0xb95e8083)
// 256: 1 = 1/0! = 1/1! (its bits are also 127<<23)
VEC8(geluconst<>, 256, $0x3f800000)
// 288: 1/2!
VEC8(geluconst<>, 288, $0x3f000000)
// 320: 1/3!
VEC8(geluconst<>, 320, $0x3e2aaaab)
// 352: 1/4!
VEC8(geluconst<>, 352, $0x3d2aaaab)
// 384: 1/5!
VEC8(geluconst<>, 384, $0x3c088889)
// 416: 1/6!
VEC8(geluconst<>, 416, $0x3ab60b61)
// 448: 1/7!
VEC8(geluconst<>, 448, $0x39500d01)
GLOBL geluconst<>(SB), RODATA|NOPTR, $480

#define CUBIC geluconst<>+0(SB)
#define KZ    geluconst<>+32(SB)
#define LO    geluconst<>+64(SB)
#define HI    geluconst<>+96(SB)
#define LOG2E geluconst<>+128(SB)
#define MAGIC geluconst<>+160(SB)
#define LN2HI geluconst<>+192(SB)
#define LN2LO geluconst<>+224(SB)
#define ONE   geluconst<>+256(SB)
#define C2    geluconst<>+288(SB)
#define C3    geluconst<>+320(SB)
#define C4    geluconst<>+352(SB)
#define C5    geluconst<>+384(SB)
#define C6    geluconst<>+416(SB)
#define C7    geluconst<>+448(SB)

// func geluAVX2FMA(dst, src []float32)
//
// Y0 x, Y1 z then r, Y2 t then 2^n, Y3 n then p; Y5–Y15 hold eleven of the
// constants, the other four (LO, HI, C6, C7) are memory operands.
TEXT ·geluAVX2FMA(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	SHRQ $3, CX
	JZ   done

	VMOVUPS CUBIC, Y5
	VMOVUPS KZ, Y6
	VMOVUPS LOG2E, Y7
	VMOVUPS MAGIC, Y8
	VMOVUPS LN2HI, Y9
	VMOVUPS LN2LO, Y10
	VMOVUPS ONE, Y11
	VMOVUPS C2, Y12
	VMOVUPS C3, Y13
	VMOVUPS C4, Y14
	VMOVUPS C5, Y15

loop:
	VMOVUPS      (SI), Y0
	VMULPS       Y0, Y0, Y1     // x²
	VMULPS       Y5, Y1, Y1     // 0.044715·x²
	VFMADD213PS  Y0, Y0, Y1     // x + 0.044715·x³
	VMULPS       Y6, Y1, Y1     // z = −2u
	VMAXPS       LO, Y1, Y1
	VMINPS       HI, Y1, Y1
	EXPF32(Y1, C6, C7)          // Y3 = e^z
	VADDPS       Y11, Y3, Y3    // 1 + e^z
	VDIVPS       Y3, Y0, Y0     // x / (1 + e^z)
	VMOVUPS      Y0, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNZ          loop
	VZEROUPPER

done:
	RET

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv() (eax, edx uint32): XCR0, the OS-enabled state components.
TEXT ·xgetbv(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET
