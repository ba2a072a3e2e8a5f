// Shared by gelu_amd64.s and ce_amd64.s: the 8-lane constant tables and
// e^z by expf32's algorithm (see gelu_amd64.s for the derivation).

// VEC8(sym, off, bits) lays out 8 copies of the float32 bits at sym+off:
// a vector that an instruction can take as a memory operand.
#define VEC8(sym, off, bits) \
	DATA sym+(off)(SB)/4, bits; DATA sym+(off+4)(SB)/4, bits; \
	DATA sym+(off+8)(SB)/4, bits; DATA sym+(off+12)(SB)/4, bits; \
	DATA sym+(off+16)(SB)/4, bits; DATA sym+(off+20)(SB)/4, bits; \
	DATA sym+(off+24)(SB)/4, bits; DATA sym+(off+28)(SB)/4, bits

// EXPF32(Z, C6, C7) sets Y3 = e^z for the 8 lanes of z in Z (clamped by
// the caller), leaving r in Z: t = z·log2e + magic (Y2), n = t − magic
// (Y3), 2^n from t's low bits (Y2), r = z − n·ln2hi − n·ln2lo (Z), then
// the degree-7 Horner polynomial in r (Y3) times 2^n. It takes log2e,
// magic, ln2hi, ln2lo, 1 and 1/2!..1/5! in Y7–Y15, and 1/6! and 1/7! as
// the memory operands C6 and C7.
#define EXPF32(Z, C6, C7) \
	VMOVAPS      Y8, Y2; \
	VFMADD231PS  Y7, Z, Y2; \
	VSUBPS       Y8, Y2, Y3; \
	VPSLLD       $23, Y2, Y2; \
	VPADDD       Y11, Y2, Y2; \
	VFNMADD231PS Y9, Y3, Z; \
	VFNMADD231PS Y10, Y3, Z; \
	VMOVUPS      C7, Y3; \
	VFMADD213PS  C6, Z, Y3; \
	VFMADD213PS  Y15, Z, Y3; \
	VFMADD213PS  Y14, Z, Y3; \
	VFMADD213PS  Y13, Z, Y3; \
	VFMADD213PS  Y12, Z, Y3; \
	VFMADD213PS  Y11, Z, Y3; \
	VFMADD213PS  Y11, Z, Y3; \
	VMULPS       Y2, Y3, Y3
