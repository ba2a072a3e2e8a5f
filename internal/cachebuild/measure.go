package cachebuild

import (
	"context"
	"fmt"
	"time"

	"github.com/ctxdep/ctxdep/internal/gpt2"
)

// Measure times what Build computes per batch, the forward pass of rows
// rows of t tokens capturing layers (to the deepest of them), after a warm-up run of one row (which
// allocates and touches the weights), and returns tokens per second.
// Token ids are fixed (BOS, then a deterministic walk through the
// vocabulary): the forward pass costs the same for any ids.
// pass is the Pass to time; nil means the CPU's.
func Measure(ctx context.Context, m *gpt2.Model, pass Pass, layers []int, rows, t int) (float64, error) {
	for _, l := range layers {
		if err := m.CheckLayer(l); err != nil {
			return 0, err
		}
	}
	if t <= 0 || t > m.NCtx || rows <= 0 {
		return 0, fmt.Errorf("cannot measure %d rows of %d tokens (the model's context is %d)", rows, t, m.NCtx)
	}
	tokens := make([]int32, rows*t) // (rows, t)
	for i := range tokens {
		if i%t == 0 {
			tokens[i] = int32(m.DVocab - 1) // BOS (50256 in GPT-2)
		} else {
			tokens[i] = int32((i * 7919) % (m.DVocab - 1))
		}
	}
	if pass == nil {
		pass = NewCPUPass(m, layers, nil, rows*t)
	}
	hb := newHostBuffers(pass, 0) // what Build gives the pass: the same copies
	defer hb.free()
	out := make([]Capture, len(layers))
	for i := range out {
		out[i].X, out[i].Y = hb.xy(rows * t * m.DModel)
	}
	if err := pass.Run(tokens[:t], 1, t, out); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := pass.Run(tokens, rows, t, out); err != nil {
		return 0, err
	}
	el := time.Since(start).Seconds()
	return float64(rows*t) / max(el, 1e-9), nil
}
