package midcoder

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// The blocked gather and scatter (W_mid in blocks that stay in cache) give
// the same bits as the unblocked ones, over several steps, with blocks
// small enough that the test's shapes take several (and a partial last
// one), for both activations.
func TestBlockedEqualsUnblocked(t *testing.T) {
	const f, c, n, m, l0 = 300, 16, 40, 70, 12
	savedG, savedS := gatherBlockBytes, scatterBlockBytes
	defer func() { gatherBlockBytes, scatterBlockBytes, unblocked = savedG, savedS, false }()
	gatherBlockBytes, scatterBlockBytes = f*c*4/7, 40*c*4
	for _, act := range []Activation{ReLU, GeluNew} {
		run := func(blocked bool) (*Params, *AdamW, []float64) {
			unblocked = !blocked
			r := rand.New(rand.NewPCG(3, 4))
			norm := func(k int, std float64) []float32 { return testutil.RandNormal(r, k, std) }
			mlp := newMLP(norm(c*n, 0.3), norm(n, 0.1), norm(n*c, 0.3), norm(c, 0.1), c, n, act)
			p := NewParams(f, c)
			p.KaimingUniform(1)
			opt := NewAdamW(p, 1e-3)
			tr := NewTrainer(mlp, p, opt, m)
			var losses []float64
			for range 4 {
				acts := &transcoder.Acts{Indptr: []int64{0}}
				for range m {
					idx := make([]int32, r.IntN(l0+1)) // empty rows too
					for i := range idx {
						idx[i] = int32(r.IntN(f))
					}
					slices.Sort(idx)
					for _, j := range slices.Compact(idx) {
						acts.Indices = append(acts.Indices, j)
						acts.Values = append(acts.Values, float32(r.ExpFloat64()))
					}
					acts.Indptr = append(acts.Indptr, int64(len(acts.Indices)))
				}
				loss, _ := tr.Step(acts, norm(m*c, 1), 1e-2)
				losses = append(losses, loss)
			}
			return p, opt, losses
		}
		p0, o0, l0s := run(false)
		p1, o1, l1s := run(true)
		same := func(what string, a, b []float32) {
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("%v: %s[%d]: blocked %g, unblocked %g", act, what, i, b[i], a[i])
				}
			}
		}
		same("W_mid", p0.WMid, p1.WMid)
		same("b_mid", p0.BMid, p1.BMid)
		same("m", o0.MW, o1.MW)
		same("v", o0.VW, o1.VW)
		if !slices.Equal(l0s, l1s) {
			t.Fatalf("%v: losses blocked %v, unblocked %v", act, l1s, l0s)
		}
	}
}
