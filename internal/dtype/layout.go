package dtype

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unsafe"
)

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// LittleEndianHost reports whether the machine stores numbers
// little-endian, as .npy and safetensors files do; then 32- and 64-bit data
// can be copied between memory and a file without decoding.
func LittleEndianHost() bool { return littleEndian }

// Bytes views a slice of fixed-size numbers as its bytes, in host order.
func Bytes[T float32 | int32 | int64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// CheckedProduct returns start·prod(shape), or false if it exceeds
// math.MaxInt64 (a negative dimension counts as overflow). A zero dimension
// makes the product zero whatever the others, as it does for a tensor's
// size.
func CheckedProduct(start int64, shape []int) (int64, bool) {
	for _, d := range shape {
		if d == 0 {
			return 0, true
		}
	}
	p := uint64(start)
	for _, d := range shape {
		hi, lo := bits.Mul64(p, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		p = lo
	}
	return int64(p), true
}

// Float64s returns v widened to float64.
func Float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Float32s returns v with each value rounded to float32.
func Float32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
