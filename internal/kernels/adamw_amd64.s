#include "go_asm.h"
#include "textflag.h"

// One AdamW step on 8 float32 lanes with AVX: updateGo (adamw.go)
// vectorised, operation for operation and in its order, so that every lane
// rounds as the scalar code does and the results are equal bit for bit:
//
//	th = θ·decay
//	m' = m·β1 + g·(1−β1)
//	v' = v·β2 + ((1−β2)·g)·g
//	d  = sqrt(v')/sqrt(1−β2^t) + eps   (VSQRTPS is exactly rounded, as is
//	                                    the float32 rounding of updateGo's
//	                                    float64 square root)
//	θ' = th − (step·m')/d              (VDIVPS, exactly rounded)
//
// No fused multiply-adds: over the midcoder's parameters the kernel is
// bound by memory (seven float32 streams), not by arithmetic; unfused it
// needs no tolerance against the Go path, while fusing m' moves θ' by up
// to ≈1e-6 relative where β1·m and (1−β1)·g nearly cancel. NaN and ±Inf propagate as in IEEE scalar arithmetic, as
// they do in updateGo. The scalars come from *AdamWStep through the field
// offsets of go_asm.h.

// func adamwAVX(k *AdamWStep, theta, m, v, g []float32)
//
// BX θ, SI m, DI v, DX g (0 for a nil g: Y3 then stays zero, so the lanes
// compute updateGo's g = 0 arithmetic); AX the index, CX the blocks left.
// Y0 θ', Y1 m', Y2 v', Y3 g, Y4–Y7 temporaries, Y8–Y15 the broadcast
// scalars. The g test is one predictable branch per 8 lanes.
TEXT ·adamwAVX(SB), NOSPLIT, $0-104
	MOVQ k+0(FP), R8
	MOVQ theta_base+8(FP), BX
	MOVQ theta_len+16(FP), CX
	MOVQ m_base+32(FP), SI
	MOVQ v_base+56(FP), DI
	MOVQ g_base+80(FP), DX
	SHRQ $3, CX
	JZ   done

	VBROADCASTSS AdamWStep_Decay(R8), Y8
	VBROADCASTSS AdamWStep_B1(R8), Y9
	VBROADCASTSS AdamWStep_B1c(R8), Y10
	VBROADCASTSS AdamWStep_B2(R8), Y11
	VBROADCASTSS AdamWStep_B2c(R8), Y12
	VBROADCASTSS AdamWStep_BC2Sqrt(R8), Y13
	VBROADCASTSS AdamWStep_StepSize(R8), Y14
	VBROADCASTSS AdamWStep_Eps(R8), Y15
	VXORPS       Y3, Y3, Y3
	XORQ         AX, AX

loop:
	TESTQ   DX, DX
	JZ      nograd
	VMOVUPS (DX)(AX*4), Y3      // g

nograd:
	VMULPS  (SI)(AX*4), Y9, Y1  // m·β1
	VMULPS  Y10, Y3, Y4         // g·(1−β1)
	VADDPS  Y4, Y1, Y1          // m'
	VMULPS  Y12, Y3, Y5         // (1−β2)·g
	VMULPS  Y3, Y5, Y5          // ((1−β2)·g)·g
	VMULPS  (DI)(AX*4), Y11, Y2 // v·β2
	VADDPS  Y5, Y2, Y2          // v'
	VSQRTPS Y2, Y6              // sqrt(v')
	VDIVPS  Y13, Y6, Y6         // sqrt(v')/sqrt(1−β2^t)
	VADDPS  Y15, Y6, Y6         // d = … + eps
	VMULPS  Y14, Y1, Y7         // step·m'
	VDIVPS  Y6, Y7, Y7          // (step·m')/d
	VMULPS  (BX)(AX*4), Y8, Y0  // th = θ·decay
	VSUBPS  Y7, Y0, Y0          // θ' = th − (step·m')/d
	VMOVUPS Y0, (BX)(AX*4)      // stored in updateGo's order: θ, m, v
	VMOVUPS Y1, (SI)(AX*4)
	VMOVUPS Y2, (DI)(AX*4)
	ADDQ    $8, AX
	DECQ    CX
	JNZ     loop
	VZEROUPPER

done:
	RET
