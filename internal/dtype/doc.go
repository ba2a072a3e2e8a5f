// Package dtype converts between float32 and the 16-bit float formats that
// checkpoints and caches store: IEEE 754 binary16 ("float16", torch.half,
// safetensors "F16") and bfloat16 (torch.bfloat16, safetensors "BF16"),
// one value at a time: Float16ToFloat32, Float32ToFloat16,
// BFloat16ToFloat32 and Float32ToBFloat16.
//
// Invariants: every conversion to float32 is exact (both 16-bit formats are
// subsets of float32), subnormals, ±Inf and NaN included. Conversions from
// float32 round to nearest, ties to even, as torch's .half() and
// .bfloat16() do; values beyond the float16 range become ±Inf, and NaN
// stays NaN in both directions.
//
// It also holds the memory-layout helpers that the .npy and safetensors
// packages share: a host byte-order test (LittleEndianHost), a byte view of
// numeric slices (Bytes) and an overflow-checked size product
// (CheckedProduct).
package dtype
