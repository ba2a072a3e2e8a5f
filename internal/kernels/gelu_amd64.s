#include "textflag.h"

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
DATA geluconst<>+0(SB)/4, $0x3d372713
DATA geluconst<>+4(SB)/4, $0x3d372713
DATA geluconst<>+8(SB)/4, $0x3d372713
DATA geluconst<>+12(SB)/4, $0x3d372713
DATA geluconst<>+16(SB)/4, $0x3d372713
DATA geluconst<>+20(SB)/4, $0x3d372713
DATA geluconst<>+24(SB)/4, $0x3d372713
DATA geluconst<>+28(SB)/4, $0x3d372713
//  32: −2·√(2/π) = −1.5957691 (twice geluSqrt2OverPi, exact in binary)
DATA geluconst<>+32(SB)/4, $0xbfcc422a
DATA geluconst<>+36(SB)/4, $0xbfcc422a
DATA geluconst<>+40(SB)/4, $0xbfcc422a
DATA geluconst<>+44(SB)/4, $0xbfcc422a
DATA geluconst<>+48(SB)/4, $0xbfcc422a
DATA geluconst<>+52(SB)/4, $0xbfcc422a
DATA geluconst<>+56(SB)/4, $0xbfcc422a
DATA geluconst<>+60(SB)/4, $0xbfcc422a
//  64: −87: e^z stays a normal float32 (expf32's lower clamp)
DATA geluconst<>+64(SB)/4, $0xc2ae0000
DATA geluconst<>+68(SB)/4, $0xc2ae0000
DATA geluconst<>+72(SB)/4, $0xc2ae0000
DATA geluconst<>+76(SB)/4, $0xc2ae0000
DATA geluconst<>+80(SB)/4, $0xc2ae0000
DATA geluconst<>+84(SB)/4, $0xc2ae0000
DATA geluconst<>+88(SB)/4, $0xc2ae0000
DATA geluconst<>+92(SB)/4, $0xc2ae0000
//  96: 89: n = 128 from z ≥ 88.38 makes 2^n the +Inf bit pattern
DATA geluconst<>+96(SB)/4, $0x42b20000
DATA geluconst<>+100(SB)/4, $0x42b20000
DATA geluconst<>+104(SB)/4, $0x42b20000
DATA geluconst<>+108(SB)/4, $0x42b20000
DATA geluconst<>+112(SB)/4, $0x42b20000
DATA geluconst<>+116(SB)/4, $0x42b20000
DATA geluconst<>+120(SB)/4, $0x42b20000
DATA geluconst<>+124(SB)/4, $0x42b20000
// 128: log2(e) = 1.44269504
DATA geluconst<>+128(SB)/4, $0x3fb8aa3b
DATA geluconst<>+132(SB)/4, $0x3fb8aa3b
DATA geluconst<>+136(SB)/4, $0x3fb8aa3b
DATA geluconst<>+140(SB)/4, $0x3fb8aa3b
DATA geluconst<>+144(SB)/4, $0x3fb8aa3b
DATA geluconst<>+148(SB)/4, $0x3fb8aa3b
DATA geluconst<>+152(SB)/4, $0x3fb8aa3b
DATA geluconst<>+156(SB)/4, $0x3fb8aa3b
// 160: 1.5·2^23: adding it rounds to an integer
DATA geluconst<>+160(SB)/4, $0x4b400000
DATA geluconst<>+164(SB)/4, $0x4b400000
DATA geluconst<>+168(SB)/4, $0x4b400000
DATA geluconst<>+172(SB)/4, $0x4b400000
DATA geluconst<>+176(SB)/4, $0x4b400000
DATA geluconst<>+180(SB)/4, $0x4b400000
DATA geluconst<>+184(SB)/4, $0x4b400000
DATA geluconst<>+188(SB)/4, $0x4b400000
// 192: 0.693359375, ln2 with few bits (Cody–Waite)
DATA geluconst<>+192(SB)/4, $0x3f318000
DATA geluconst<>+196(SB)/4, $0x3f318000
DATA geluconst<>+200(SB)/4, $0x3f318000
DATA geluconst<>+204(SB)/4, $0x3f318000
DATA geluconst<>+208(SB)/4, $0x3f318000
DATA geluconst<>+212(SB)/4, $0x3f318000
DATA geluconst<>+216(SB)/4, $0x3f318000
DATA geluconst<>+220(SB)/4, $0x3f318000
// 224: −2.12194440e-4 = ln2 − ln2hi
DATA geluconst<>+224(SB)/4, $0xb95e8083
DATA geluconst<>+228(SB)/4, $0xb95e8083
DATA geluconst<>+232(SB)/4, $0xb95e8083
DATA geluconst<>+236(SB)/4, $0xb95e8083
DATA geluconst<>+240(SB)/4, $0xb95e8083
DATA geluconst<>+244(SB)/4, $0xb95e8083
DATA geluconst<>+248(SB)/4, $0xb95e8083
DATA geluconst<>+252(SB)/4, $0xb95e8083
// 256: 1 = 1/0! = 1/1! (its bits are also 127<<23)
DATA geluconst<>+256(SB)/4, $0x3f800000
DATA geluconst<>+260(SB)/4, $0x3f800000
DATA geluconst<>+264(SB)/4, $0x3f800000
DATA geluconst<>+268(SB)/4, $0x3f800000
DATA geluconst<>+272(SB)/4, $0x3f800000
DATA geluconst<>+276(SB)/4, $0x3f800000
DATA geluconst<>+280(SB)/4, $0x3f800000
DATA geluconst<>+284(SB)/4, $0x3f800000
// 288: 1/2!
DATA geluconst<>+288(SB)/4, $0x3f000000
DATA geluconst<>+292(SB)/4, $0x3f000000
DATA geluconst<>+296(SB)/4, $0x3f000000
DATA geluconst<>+300(SB)/4, $0x3f000000
DATA geluconst<>+304(SB)/4, $0x3f000000
DATA geluconst<>+308(SB)/4, $0x3f000000
DATA geluconst<>+312(SB)/4, $0x3f000000
DATA geluconst<>+316(SB)/4, $0x3f000000
// 320: 1/3!
DATA geluconst<>+320(SB)/4, $0x3e2aaaab
DATA geluconst<>+324(SB)/4, $0x3e2aaaab
DATA geluconst<>+328(SB)/4, $0x3e2aaaab
DATA geluconst<>+332(SB)/4, $0x3e2aaaab
DATA geluconst<>+336(SB)/4, $0x3e2aaaab
DATA geluconst<>+340(SB)/4, $0x3e2aaaab
DATA geluconst<>+344(SB)/4, $0x3e2aaaab
DATA geluconst<>+348(SB)/4, $0x3e2aaaab
// 352: 1/4!
DATA geluconst<>+352(SB)/4, $0x3d2aaaab
DATA geluconst<>+356(SB)/4, $0x3d2aaaab
DATA geluconst<>+360(SB)/4, $0x3d2aaaab
DATA geluconst<>+364(SB)/4, $0x3d2aaaab
DATA geluconst<>+368(SB)/4, $0x3d2aaaab
DATA geluconst<>+372(SB)/4, $0x3d2aaaab
DATA geluconst<>+376(SB)/4, $0x3d2aaaab
DATA geluconst<>+380(SB)/4, $0x3d2aaaab
// 384: 1/5!
DATA geluconst<>+384(SB)/4, $0x3c088889
DATA geluconst<>+388(SB)/4, $0x3c088889
DATA geluconst<>+392(SB)/4, $0x3c088889
DATA geluconst<>+396(SB)/4, $0x3c088889
DATA geluconst<>+400(SB)/4, $0x3c088889
DATA geluconst<>+404(SB)/4, $0x3c088889
DATA geluconst<>+408(SB)/4, $0x3c088889
DATA geluconst<>+412(SB)/4, $0x3c088889
// 416: 1/6!
DATA geluconst<>+416(SB)/4, $0x3ab60b61
DATA geluconst<>+420(SB)/4, $0x3ab60b61
DATA geluconst<>+424(SB)/4, $0x3ab60b61
DATA geluconst<>+428(SB)/4, $0x3ab60b61
DATA geluconst<>+432(SB)/4, $0x3ab60b61
DATA geluconst<>+436(SB)/4, $0x3ab60b61
DATA geluconst<>+440(SB)/4, $0x3ab60b61
DATA geluconst<>+444(SB)/4, $0x3ab60b61
// 448: 1/7!
DATA geluconst<>+448(SB)/4, $0x39500d01
DATA geluconst<>+452(SB)/4, $0x39500d01
DATA geluconst<>+456(SB)/4, $0x39500d01
DATA geluconst<>+460(SB)/4, $0x39500d01
DATA geluconst<>+464(SB)/4, $0x39500d01
DATA geluconst<>+468(SB)/4, $0x39500d01
DATA geluconst<>+472(SB)/4, $0x39500d01
DATA geluconst<>+476(SB)/4, $0x39500d01
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
	VMOVAPS      Y8, Y2
	VFMADD231PS  Y7, Y1, Y2     // t = z·log2e + magic
	VSUBPS       Y8, Y2, Y3     // n
	VPSLLD       $23, Y2, Y2
	VPADDD       Y11, Y2, Y2    // 2^n
	VFNMADD231PS Y9, Y3, Y1     // r = z − n·ln2hi
	VFNMADD231PS Y10, Y3, Y1    // r −= n·ln2lo
	VMOVUPS      C7, Y3
	VFMADD213PS  C6, Y1, Y3     // p = p·r + 1/6!
	VFMADD213PS  Y15, Y1, Y3    // 1/5!
	VFMADD213PS  Y14, Y1, Y3    // 1/4!
	VFMADD213PS  Y13, Y1, Y3    // 1/3!
	VFMADD213PS  Y12, Y1, Y3    // 1/2!
	VFMADD213PS  Y11, Y1, Y3    // 1/1!
	VFMADD213PS  Y11, Y1, Y3    // 1/0!
	VMULPS       Y2, Y3, Y3     // e^z
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
