package kernels

import (
	"math"

	"github.com/ctxdep/ctxdep/internal/par"
)

// ReLUBackward sets dh[i] = 0 where pre[i] ≤ 0 (−0 included, NaN not)
// and leaves dh[i] as it is elsewhere: the gradient through ReLU, as
//
//	if pre[i] <= 0 { dh[i] = 0 }
//
// computes it, bit for bit, but without the branch. At the midcoder's
// pre-activations about half are negative in no pattern, so that branch
// mispredicts on every other element; here a mask made from pre's bits
// clears dh's.
func ReLUBackward(dh, pre []float32) {
	if len(dh) != len(pre) {
		panic("kernels: ReLUBackward length mismatch")
	}
	par.Chunks(len(dh), 1<<14, func(lo, hi int) {
		reluBackwardGo(dh[lo:hi], pre[lo:hi])
	})
}

func reluBackwardGo(dh, pre []float32) {
	pre = pre[:len(dh)]
	for i, p := range pre {
		dh[i] = math.Float32frombits(math.Float32bits(dh[i]) & reluKeep(math.Float32bits(p)))
	}
}

// reluKeep returns all ones where the float32 with bits b is > 0 or a NaN
// (where pre ≤ 0 is false), zero where it is ≤ 0, without branches.
func reluKeep(b uint32) uint32 {
	pos := uint32(-int64(int32(b)) >> 63)                   // int32(b) > 0: sign clear, not +0
	nan := uint32((0x7f800000 - int64(b&0x7fffffff)) >> 63) // |b| above +Inf's bits
	return pos | nan
}
