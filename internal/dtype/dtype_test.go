package dtype

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Every binary16 value survives float16 → float32 → float16 unchanged (NaNs
// stay NaN), which proves the widening is exact and the rounding is the identity on
// representable values.
func TestFloat16RoundTripAllValues(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		got := Float32ToFloat16(f)
		if f != f {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x → %#04x", h, got)
			}
			continue
		}
		if got != uint16(h) {
			t.Fatalf("Float32ToFloat16(Float16ToFloat32(%#04x)=%g) = %#04x", h, f, got)
		}
	}
}

// Hand-checked values, including those gopickle gets wrong.
func TestFloat16Known(t *testing.T) {
	cases := []struct {
		h    uint16
		want float32
	}{
		{0x0001, 5.9604645e-08}, // smallest subnormal, 2^-24
		{0x03ff, 6.0975552e-05}, // largest subnormal
		{0x0400, 6.1035156e-05}, // smallest normal
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x7c00, float32(math.Inf(1))},
		{0xfc00, float32(math.Inf(-1))},
		{0x8000, float32(math.Copysign(0, -1))},
	}
	for _, c := range cases {
		if got := Float16ToFloat32(c.h); got != c.want || math.Signbit(float64(got)) != math.Signbit(float64(c.want)) {
			t.Errorf("Float16ToFloat32(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	if got := Float16ToFloat32(0x7e00); got == got {
		t.Errorf("Float16ToFloat32(0x7e00) = %g, want NaN", got)
	}
}

// Rounding from float32 picks the nearest float16 (ties to even), checked by
// brute force against the two neighbouring float16 values.
func TestFloat32ToFloat16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if f != f || math.Abs(float64(f)) > 65519 { // NaN, or rounds to Inf
			continue
		}
		h := Float32ToFloat16(f)
		got := float64(Float16ToFloat32(h))
		d := math.Abs(got - float64(f))
		for _, n := range []uint16{h - 1, h + 1} {
			if n&0x7c00 == 0x7c00 || (n^h)&0x8000 != 0 {
				continue
			}
			dn := math.Abs(float64(Float16ToFloat32(n)) - float64(f))
			if dn < d || (dn == d && n&1 == 0) {
				t.Fatalf("Float32ToFloat16(%g) = %#04x (%g), but %#04x is nearer or even", f, h, got, n)
			}
		}
	}
	if got := Float32ToFloat16(65520); got != 0x7c00 {
		t.Errorf("Float32ToFloat16(65520) = %#04x, want +Inf", got)
	}
}

func TestBFloat16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BFloat16ToFloat32(uint16(h))
		if f != f {
			continue
		}
		if got := Float32ToBFloat16(f); got != uint16(h) {
			t.Fatalf("bf16 round trip %#04x → %#04x", h, got)
		}
	}
	// 1 + 2^-8 is a tie between 1 and 1+2^-7: even mantissa (1) wins.
	if got := Float32ToBFloat16(1 + 1.0/256); got != 0x3f80 {
		t.Errorf("Float32ToBFloat16(1+2^-8) = %#04x, want 0x3f80", got)
	}
	if got := Float32ToBFloat16(float32(math.NaN())); BFloat16ToFloat32(got) == BFloat16ToFloat32(got) {
		t.Errorf("NaN lost")
	}
}

func TestCheckedProduct(t *testing.T) {
	tests := []struct {
		start int64
		shape []int
		want  int64
		ok    bool
	}{
		{4, nil, 4, true},
		{4, []int{2, 3}, 24, true},
		{4, []int{math.MaxInt, 0}, 0, true},
		{1, []int{math.MaxInt64}, math.MaxInt64, true},
		{2, []int{math.MaxInt64}, 0, false},
		{1, []int{1 << 32, 1 << 32}, 0, false},
		{1, []int{-1}, 0, false},
	}
	for _, tc := range tests {
		if got, ok := CheckedProduct(tc.start, tc.shape); got != tc.want || ok != tc.ok {
			t.Errorf("CheckedProduct(%d, %v) = %d, %v, want %d, %v", tc.start, tc.shape, got, ok, tc.want, tc.ok)
		}
	}
}
