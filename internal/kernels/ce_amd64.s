#include "textflag.h"
#include "expf32_amd64.h"

// Σ e^(x − mx) over a row of logits, 8 float32 lanes at a time with AVX2
// and FMA, for CrossEntropyRows: z = x − mx (≤ 0 for the row's finite
// maximum mx), clamped below at −87 (e^−87 ≈ 1.6e-38: what the clamp adds
// to a sum ≥ 1 is below float64's resolution), e^z by expf32's algorithm
// (Cody–Waite reduction, degree-7 Taylor polynomial, 2^n through the
// exponent bits: see gelu_amd64.s), and the eight lanes accumulated in
// float64, four by four, in two accumulators.

// 0: LO
VEC8(ceconst<>, 0, $0xc2ae0000)
// 32: C6
VEC8(ceconst<>, 32, $0x3ab60b61)
// 64: C7
VEC8(ceconst<>, 64, $0x39500d01)
// 96: LOG2E
DATA ceconst<>+96(SB)/4, $0x3fb8aa3b
// 100: MAGIC
DATA ceconst<>+100(SB)/4, $0x4b400000
// 104: LN2HI
DATA ceconst<>+104(SB)/4, $0x3f318000
// 108: LN2LO
DATA ceconst<>+108(SB)/4, $0xb95e8083
// 112: ONE
DATA ceconst<>+112(SB)/4, $0x3f800000
// 116: C2
DATA ceconst<>+116(SB)/4, $0x3f000000
// 120: C3
DATA ceconst<>+120(SB)/4, $0x3e2aaaab
// 124: C4
DATA ceconst<>+124(SB)/4, $0x3d2aaaab
// 128: C5
DATA ceconst<>+128(SB)/4, $0x3c088889
GLOBL ceconst<>(SB), RODATA|NOPTR, $132

#define CE_LO ceconst<>+0(SB)
#define CE_C6 ceconst<>+32(SB)
#define CE_C7 ceconst<>+64(SB)
#define CE_LOG2E ceconst<>+96(SB)
#define CE_MAGIC ceconst<>+100(SB)
#define CE_LN2HI ceconst<>+104(SB)
#define CE_LN2LO ceconst<>+108(SB)
#define CE_ONE ceconst<>+112(SB)
#define CE_C2 ceconst<>+116(SB)
#define CE_C3 ceconst<>+120(SB)
#define CE_C4 ceconst<>+124(SB)
#define CE_C5 ceconst<>+128(SB)

// func expSumAVX2FMA(row []float32, mx float32) float64
//
// Y0 z then r, Y2 t then 2^n, Y3 n then p, Y4 mx, Y5 and Y6 the float64
// sums, Y7–Y15 constants; LO, C6 and C7 are memory operands.
TEXT ·expSumAVX2FMA(SB), NOSPLIT, $0-40
	MOVQ row_base+0(FP), SI
	MOVQ row_len+8(FP), CX
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	SHRQ $3, CX
	JZ   done

	VBROADCASTSS mx+24(FP), Y4
	VBROADCASTSS CE_LOG2E, Y7
	VBROADCASTSS CE_MAGIC, Y8
	VBROADCASTSS CE_LN2HI, Y9
	VBROADCASTSS CE_LN2LO, Y10
	VBROADCASTSS CE_ONE, Y11
	VBROADCASTSS CE_C2, Y12
	VBROADCASTSS CE_C3, Y13
	VBROADCASTSS CE_C4, Y14
	VBROADCASTSS CE_C5, Y15

loop:
	VMOVUPS      (SI), Y0
	VSUBPS       Y4, Y0, Y0     // z = x − mx
	VMAXPS       CE_LO, Y0, Y0
	EXPF32(Y0, CE_C6, CE_C7)    // Y3 = e^z
	VCVTPS2PD    X3, Y2         // lanes 0–3 in float64
	VADDPD       Y2, Y5, Y5
	VEXTRACTF128 $1, Y3, X3
	VCVTPS2PD    X3, Y3         // lanes 4–7
	VADDPD       Y3, Y6, Y6
	ADDQ         $32, SI
	DECQ         CX
	JNZ          loop

done:
	VADDPD       Y6, Y5, Y5
	VEXTRACTF128 $1, Y5, X6
	VADDPD       X6, X5, X5
	VUNPCKHPD    X5, X5, X6
	VADDSD       X6, X5, X5
	VZEROUPPER
	MOVSD        X5, ret+32(FP)
	RET

// func maxAVX2(row []float32) (mx float32, nan bool)
//
// The maximum of row[:len(row)&^7] (at least 8 elements), 8 lanes at a
// time, and whether any of them is NaN (VMAXPS alone would drop a NaN once
// a later lane compares against it). Y0 the running maximum, Y1 the NaN
// lanes seen.
TEXT ·maxAVX2(SB), NOSPLIT, $0-29
	MOVQ    row_base+0(FP), SI
	MOVQ    row_len+8(FP), CX
	SHRQ    $3, CX
	VMOVUPS (SI), Y0
	VXORPS  Y1, Y1, Y1

mloop:
	VMOVUPS (SI), Y2
	VCMPPS  $3, Y2, Y2, Y3  // unordered: x is NaN
	VORPS   Y3, Y1, Y1
	VMAXPS  Y2, Y0, Y0
	ADDQ    $32, SI
	DECQ    CX
	JNZ     mloop

	VEXTRACTF128 $1, Y0, X2
	VMAXPS       X2, X0, X0
	VPERMILPS    $0x4e, X0, X2
	VMAXPS       X2, X0, X0
	VPERMILPS    $0xb1, X0, X2
	VMAXPS       X2, X0, X0
	MOVSS        X0, mx+24(FP)
	VMOVMSKPS    Y1, AX
	TESTL        AX, AX
	SETNE        nan+28(FP)
	VZEROUPPER
	RET
