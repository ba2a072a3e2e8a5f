package testutil

import (
	"math"
	"math/rand/v2"
)

// MaxAbs returns max |v[i]| (0 for an empty v; NaN if any v[i] is NaN, so
// that a tolerance scaled by it fails rather than passes).
func MaxAbs[T float32 | float64](v []T) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// SameBits reports whether a and b hold the same float32 values bit for
// bit (NaNs with the same payload, +0 and −0 apart).
func SameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// RandNormal returns n values drawn from N(0, scale²), each rounded to
// float32 once (float32(scale·x)).
func RandNormal(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * r.NormFloat64())
	}
	return v
}
