package midcoder

import (
	"fmt"
	"math/rand/v2"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/kernels"
)

// Activation is the MLP nonlinearity the midcoder trains through.
type Activation int

const (
	// ReLU is the notebook's choice ("NOTE: ReLU, not gelu_new").
	ReLU Activation = iota
	// GeluNew is GPT-2's own MLP activation.
	GeluNew
)

func (a Activation) String() string {
	if a == GeluNew {
		return "gelu_new"
	}
	return "relu"
}

// ParseActivation reads "relu" or "gelu_new".
func ParseActivation(s string) (Activation, error) {
	switch s {
	case "relu":
		return ReLU, nil
	case "gelu_new":
		return GeluNew, nil
	}
	return 0, fmt.Errorf("activation %q: want relu or gelu_new", s)
}

// MLP is the frozen, TransformerLens-processed MLP of block L.
type MLP struct {
	C, N  int
	Act   Activation
	WIn   []float32 // (C, N)
	BIn   []float32 // (N)
	WOut  []float32 // (N, C)
	BOut  []float32 // (C)
	wInT  []float32 // (N, C) for the backward pass
	wOutT []float32 // (C, N)
}

// NewMLP returns block layer's MLP of m with activation act.
func NewMLP(m *gpt2.Model, layer int, act Activation) *MLP {
	b := m.Blocks[layer]
	return newMLP(b.WIn, b.BIn, b.WOut, b.BOut, m.DModel, m.DMLP, act)
}

func newMLP(wIn, bIn, wOut, bOut []float32, c, n int, act Activation) *MLP {
	return &MLP{C: c, N: n, Act: act, WIn: wIn, BIn: bIn, WOut: wOut, BOut: bOut,
		wInT: kernels.Transpose(wIn, c, n), wOutT: kernels.Transpose(wOut, n, c)}
}

// Params are the trainable parameters.
type Params struct {
	F, C int
	WMid []float32 // (F, C)
	BMid []float32 // (C)
}

// NewParams returns zero parameters.
func NewParams(f, c int) *Params {
	return &Params{F: f, C: c, WMid: make([]float32, f*c), BMid: make([]float32, c)}
}

// KaimingUniform fills W_mid with U(−b, b), b = sqrt(6 / C): torch's
// kaiming_uniform_ (a = 0, fan_in mode, leaky_relu gain √2) with fan_in =
// size of dim 1 = C, as the notebook initialises W_mid. The
// numbers come from our own seeded PCG generator: torch's random stream
// cannot be reproduced outside torch. b_mid stays zero.
func (p *Params) KaimingUniform(seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x6d696463))
	bound := sqrtf(6 / float64(p.C))
	for i := range p.WMid {
		p.WMid[i] = float32((2*r.Float64() - 1)) * bound
	}
	clear(p.BMid)
}
