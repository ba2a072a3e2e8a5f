package analysis

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Float32Eps is float32's machine epsilon, 2^-23: torch.linalg.pinv's
// default relative cut-off is max(m, n)·eps of the input's dtype, and the
// notebook's input is float32.
const Float32Eps = 1.0 / (1 << 23)

// Spectrum describes a pseudo-inverse.
type Spectrum struct {
	Sigma    []float64 // singular values, descending
	SigmaMax float64
	RTol     float64 // relative cut-off
	Cutoff   float64 // RTol·SigmaMax: smaller singular values are dropped
	Rank     int     // singular values kept
}

// Pinv returns the Moore–Penrose pseudo-inverse (n, m) of a (m, n), from
// the build's float64 SVD (blasimpl.SVD), dropping singular values ≤
// rtol·σ_max as torch.linalg.pinv does. rtol ≤ 0 means torch's default for float32
// input, max(m, n)·Float32Eps. With float64's own ε the null directions
// that float32 rounding leaves at σ ≈ 1e-8·σ_max would be kept and blow
// the result up.
func Pinv(a []float64, m, n int, rtol float64) ([]float64, Spectrum, error) {
	if len(a) != m*n || m == 0 || n == 0 {
		return nil, Spectrum{}, fmt.Errorf("pinv: %d values for a %d×%d matrix", len(a), m, n)
	}
	for _, v := range a {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, Spectrum{}, fmt.Errorf("pinv: the matrix holds %g", v)
		}
	}
	if rtol <= 0 {
		rtol = float64(max(m, n)) * Float32Eps
	}
	sigma, u, v, err := blasimpl.SVD(a, m, n) // U (m, k), V (n, k)
	if err != nil {
		return nil, Spectrum{}, fmt.Errorf("pinv: %w", err)
	}
	k := len(sigma)
	sp := Spectrum{Sigma: sigma, SigmaMax: sigma[0], RTol: rtol, Cutoff: rtol * sigma[0]}
	for _, s := range sigma {
		if s > sp.Cutoff && s != 0 {
			sp.Rank++ // singular values come in descending order
		}
	}
	// pinv = V_r diag(1/σ) U_rᵀ over the r kept singular values: V_r's
	// columns scaled, then one GEMM.
	r := sp.Rank
	vs := make([]float64, n*r)
	for i := 0; i < n; i++ {
		for j := 0; j < r; j++ {
			vs[i*r+j] = v[i*k+j] / sigma[j]
		}
	}
	out := make([]float64, n*m)
	if r > 0 {
		blas64.Gemm(blas.NoTrans, blas.Trans, 1,
			blas64.General{Rows: n, Cols: r, Stride: r, Data: vs},
			blas64.General{Rows: m, Cols: r, Stride: k, Data: u[:(m-1)*k+r]},
			0, blas64.General{Rows: n, Cols: m, Stride: m, Data: out})
	}
	return out, sp, nil
}

// PinvBaseline returns W_mid = W_dec @ pinv(W_in @ W_out) (F, C), with
// W_in @ W_out and the product computed in float64.
// wDec (F, C), wIn (C, N), wOut (N, C). A NaN or ±Inf in an input, or a
// result beyond float32's range, is an error that names the matrix and
// the index.
func PinvBaseline(wDec, wIn, wOut []float32, f, c, n int) ([]float32, Spectrum, error) {
	if len(wDec) != f*c || len(wIn) != c*n || len(wOut) != n*c {
		panic("analysis: PinvBaseline shape mismatch")
	}
	for _, m := range []struct {
		name       string
		v          []float32
		rows, cols int
	}{{"W_dec", wDec, f, c}, {"W_in", wIn, c, n}, {"W_out", wOut, n, c}} {
		if err := dtype.CheckFinite(m.name, m.v, m.rows, m.cols); err != nil {
			return nil, Spectrum{}, fmt.Errorf("pinv: %w", err)
		}
	}
	prod := make([]float64, c*c) // W_in @ W_out (C, C)
	matMul64(prod, wIn, dtype.Float64s(wOut), c, n, c)
	p, sp, err := Pinv(prod, c, c, 0)
	if err != nil {
		return nil, sp, err
	}
	out64 := make([]float64, f*c)
	matMul64(out64, wDec, p, f, c, c)
	out := dtype.Float32s(out64)
	if err := dtype.CheckFinite("W_mid", out, f, c); err != nil {
		return nil, sp, fmt.Errorf("pinv: the baseline's %w (beyond float32's range)", err)
	}
	return out, sp, nil
}

// PinvMidcoder returns the pinv baseline of block layer's MLP of m for the
// transcoder tc as midcoder parameters (b_mid zero), with its spectrum.
func PinvMidcoder(m *gpt2.Model, layer int, tc *transcoder.Transcoder) (*midcoder.Params, Spectrum, error) {
	if tc.DOut != m.DModel {
		return nil, Spectrum{}, fmt.Errorf("transcoder %s has d_out %d, the model's d_model is %d", tc.Path, tc.DOut, m.DModel)
	}
	b := m.Blocks[layer]
	w, sp, err := PinvBaseline(tc.WDec, b.WIn, b.WOut, tc.DSAE, m.DModel, m.DMLP)
	if err != nil {
		return nil, sp, fmt.Errorf("%w (W_dec of the transcoder %s, W_in and W_out of the model's block %d)", err, tc.Path, layer)
	}
	p := midcoder.NewParams(tc.DSAE, m.DModel)
	copy(p.WMid, w)
	return p, sp, nil
}

// LossBatch is the sequences per batch of CacheLoss: its model needs
// LossBatch·T rows.
const LossBatch = 16

// CacheLoss returns md's loss, mean((out − y)²), and loss_norm, loss /
// mean(y²), over every token of c, accumulated in float64. enc encodes x
// where the cache's stored activations are not the transcoder's (nil:
// use the stored ones).
func CacheLoss(ctx context.Context, c *actcache.Cache, enc *transcoder.Encoder, md *midcoder.Model) (loss, lossNorm float64, err error) {
	rd, err := c.NewReader(ctx, actcache.ReadOptions{Encoder: enc})
	if err != nil {
		return 0, 0, err
	}
	defer rd.Close()
	var se, sy, n float64
	for {
		b, err := rd.Next(LossBatch)
		if err == io.EOF {
			return se / n, se / sy, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if b.Acts == nil {
			return 0, 0, fmt.Errorf("the cache %s stores no activations and no encoder was given", c.Dir)
		}
		l, my2 := midcoder.Loss(md.Forward(b.Acts), b.Y)
		m := float64(len(b.Y))
		se, sy, n = se+l*m, sy+my2*m, n+m
	}
}

// matMul64 sets dst (m, n) = a (m, k) @ b (k, n) in float64, a converted
// from float32 a part of rows at a time, the parts computed concurrently
// with blas64 (the build's BLAS). The cut follows the shape alone, so the
// result does not depend on the number of cores.
func matMul64(dst []float64, a []float32, b []float64, m, k, n int) {
	const partRows = 512
	parts := (m + partRows - 1) / partRows
	par.Jobs(parts, 0, func(_, q int) {
		r0, r1 := q*partRows, min((q+1)*partRows, m)
		gemm64(dst[r0*n:r1*n], dtype.Float64s(a[r0*k:r1*k]), b, r1-r0, k, n)
	})
}

// gemm64 sets dst (m, n) = a (m, k) @ b (k, n), dense row-major float64,
// in one call of the build's BLAS.
func gemm64(dst, a, b []float64, m, k, n int) {
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas64.General{Rows: m, Cols: k, Stride: k, Data: a},
		blas64.General{Rows: k, Cols: n, Stride: n, Data: b},
		0, blas64.General{Rows: m, Cols: n, Stride: n, Data: dst})
}
