package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ctxdep/ctxdep/internal/par"
)

// ReLUBackward equals the branching loop bit for bit, on random values
// and on the edge cases: ±0, ±Inf, NaNs of both signs, subnormals, the
// largest and smallest magnitudes.
func TestReLUBackwardMatchesBranch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	edge := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
		0x7fffffff, 0xffffffff, 1, 0x80000001, 0x007fffff, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000}
	pre := make([]float32, 0, 100000)
	for _, b := range edge {
		pre = append(pre, math.Float32frombits(b))
	}
	for len(pre) < cap(pre) {
		if r.IntN(4) == 0 {
			pre = append(pre, math.Float32frombits(r.Uint32()))
		} else {
			pre = append(pre, float32(r.NormFloat64()))
		}
	}
	dh := make([]float32, len(pre))
	for i := range dh {
		dh[i] = float32(r.NormFloat64())
	}
	want := append([]float32(nil), dh...)
	for i, p := range pre {
		if p <= 0 {
			want[i] = 0
		}
	}
	got := append([]float32(nil), dh...)
	ReLUBackward(got, pre)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("pre %#08x: dh %g, want %g", math.Float32bits(pre[i]), got[i], want[i])
		}
	}
}

// BenchmarkReLUBackward: one midcoder step's ReLU backward at B = 64
// (8,192 tokens × 3,072), the branchless kernel against the branching
// loop it replaced, both split over the cores as the midcoder runs them.
func BenchmarkReLUBackward(b *testing.B) {
	r := rand.New(rand.NewPCG(6, 6))
	pre, dh := randSlice(r, 8192*3072, 1), randSlice(r, 8192*3072, 1)
	b.Run("mask", func(b *testing.B) {
		for b.Loop() {
			ReLUBackward(dh, pre)
		}
	})
	b.Run("branch", func(b *testing.B) {
		for b.Loop() {
			par.Chunks(len(dh), 1<<14, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					if pre[i] <= 0 {
						dh[i] = 0
					}
				}
			})
		}
	})
}
