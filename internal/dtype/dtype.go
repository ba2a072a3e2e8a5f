package dtype

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Float16ToFloat32 returns the float32 equal to the binary16 value h.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN: keep the payload in the top mantissa bits.
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal: rebias 15 → 127.
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	default: // subnormal: man · 2^-24, exact in float32.
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}

// Float32ToFloat16 rounds f to the nearest binary16 value, ties to even.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if man == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(man>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Result is subnormal (or zero): value = m · 2^-24 with m = round(|f| · 2^24).
		if e < -10 {
			return sign
		}
		m := man | 0x800000     // implicit bit; value = m · 2^(exp-150)
		shift := uint32(14 - e) // 150 - exp - 24 + ... = bits to drop
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, and up to Inf: both correct
	}
	return sign | uint16(r)
}

// BFloat16ToFloat32 returns the float32 equal to the bfloat16 value h.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// Float32ToBFloat16 rounds f to the nearest bfloat16 value, ties to even;
// NaN stays NaN.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// CheckFinite returns an error naming the first NaN or ±Inf of the tensor
// name of shape shape and its index ("W_mid holds NaN at [3, 7]"): the
// one check that weights and data read from files are finite.
func CheckFinite(name string, v []float32, shape ...int) error {
	if AllFinite(v) {
		return nil
	}
	for i, x := range v {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 { // exponent all ones: ±Inf or NaN
			return fmt.Errorf("%s holds %v at %s", name, x, IndexString(i, shape))
		}
	}
	return nil
}

// IndexString formats the flat index i of a tensor of shape shape as its
// multi-index, "[i0, i1, …]" ("[i]" without a shape).
func IndexString(i int, shape []int) string {
	if len(shape) == 0 {
		return fmt.Sprintf("[%d]", i)
	}
	idx := make([]string, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		if d := shape[k]; d > 0 {
			idx[k] = strconv.Itoa(i % d)
			i /= d
		}
	}
	return "[" + strings.Join(idx, ", ") + "]"
}

// AllFinite reports whether v holds no NaN or ±Inf: CheckFinite's fast
// path, four values an iteration.
func AllFinite(v []float32) bool {
	const exp = 0x7f800000 // exponent all ones: ±Inf or NaN
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b := math.Float32bits(v[i])&exp, math.Float32bits(v[i+1])&exp
		c, d := math.Float32bits(v[i+2])&exp, math.Float32bits(v[i+3])&exp
		if a == exp || b == exp || c == exp || d == exp {
			return false
		}
	}
	for ; i < len(v); i++ {
		if math.Float32bits(v[i])&exp == exp {
			return false
		}
	}
	return true
}
