package transcoder

import (
	"math"
	"math/rand/v2"
)

// Random returns a transcoder of width f on inputs of width c with seeded
// weights scaled so that, on LayerNorm-normalised inputs (unit variance per
// component), about l0 features fire per token, as the real transcoders'
// tens to hundreds do. It exists for benchmarks.
func Random(c, f int, l0 float64, seed uint64) *Transcoder {
	r := rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
	tc := &Transcoder{Path: "random", DIn: c, DOut: c, DSAE: f, Layer: -1}
	// hidden_pre ~ N(b, 1) when W_enc ~ N(0, 1/C) and |x|² ≈ C; firing
	// with probability l0/f needs b = −Φ⁻¹(1 − l0/f).
	b := float32(-math.Sqrt2 * math.Erfinv(1-2*l0/float64(f)))
	std := float32(1 / math.Sqrt(float64(c)))
	tc.WEnc = make([]float32, c*f)
	for i := range tc.WEnc {
		tc.WEnc[i] = std * float32(r.NormFloat64())
	}
	tc.BEnc = make([]float32, f)
	for i := range tc.BEnc {
		tc.BEnc[i] = b
	}
	tc.WDec = make([]float32, f*c)
	for i := range tc.WDec {
		tc.WDec[i] = std * float32(r.NormFloat64())
	}
	tc.BDec = make([]float32, c)
	tc.BDecOut = make([]float32, c)
	return tc
}
