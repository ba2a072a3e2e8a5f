#include "textflag.h"

// func axpyAVX(y []float32, a float32, x []float32)
//
// y[i] = y[i] + a·x[i] with the product and the sum each rounded to
// float32 (VMULPS, then VADDPS), as gonum's Saxpy and a Go loop compute
// it, so the kernel equals them bit for bit: 16 lanes per iteration in two
// independent YMM chains, then one block of 8 if left, then VMULSS/VADDSS
// one element at a time for the last 0..7. Not fused on purpose: at a row
// of 768 in L1 the loop is bound by its loads and stores, so an FMA would
// save no time, and it would change the midcoder's gradients by an ulp
// here and there (see Axpy). Unaligned loads and stores throughout (on
// 32-byte-aligned rows, as the midcoder's are, they cost nothing extra).
// DI y, SI x, CX the length, BX the blocks of 16 left; Y0 a broadcast.
TEXT ·axpyAVX(SB), NOSPLIT, $0-56
	MOVQ         y_base+0(FP), DI
	MOVQ         y_len+8(FP), CX
	MOVQ         x_base+32(FP), SI
	VBROADCASTSS a+24(FP), Y0
	MOVQ         CX, BX
	SHRQ         $4, BX
	JZ           block8

loop16:
	VMULPS  (SI), Y0, Y1   // a·x
	VMULPS  32(SI), Y0, Y2
	VADDPS  (DI), Y1, Y1   // + y
	VADDPS  32(DI), Y2, Y2
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	DECQ    BX
	JNZ     loop16

block8:
	TESTQ   $8, CX
	JZ      tail
	VMULPS  (SI), Y0, Y1
	VADDPS  (DI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI

tail:
	ANDQ $7, CX
	JZ   done

loop1:
	VMULSS (SI), X0, X1
	VADDSS (DI), X1, X1
	VMOVSS X1, (DI)
	ADDQ   $4, SI
	ADDQ   $4, DI
	DECQ   CX
	JNZ    loop1

done:
	VZEROUPPER
	RET
