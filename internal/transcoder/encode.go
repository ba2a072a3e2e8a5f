package transcoder

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/par"
)

// Acts holds sparse feature activations of M rows in CSR form.
type Acts struct {
	Indptr  []int64   // (M+1)
	Indices []int32   // (nnz) ascending within a row
	Values  []float32 // (nnz) all > 0
}

// Rows returns M.
func (a *Acts) Rows() int { return len(a.Indptr) - 1 }

// AppendRows appends rows [lo, hi) of src to a (which holds at least its
// leading 0 of Indptr).
func (a *Acts) AppendRows(src *Acts, lo, hi int) {
	base, off := a.Indptr[len(a.Indptr)-1], src.Indptr[lo]
	for _, p := range src.Indptr[lo+1 : hi+1] {
		a.Indptr = append(a.Indptr, base+p-off)
	}
	a.Indices = append(a.Indices, src.Indices[off:src.Indptr[hi]]...)
	a.Values = append(a.Values, src.Values[off:src.Indptr[hi]]...)
}

// Row returns the active features of row r and their activations.
func (a *Acts) Row(r int) ([]int32, []float32) {
	lo, hi := a.Indptr[r], a.Indptr[r+1]
	return a.Indices[lo:hi], a.Values[lo:hi]
}

// Dense returns the activations expanded to a dense (M, f) matrix, f the
// number of features.
func (a *Acts) Dense(f int) []float32 {
	out := make([]float32, a.Rows()*f)
	for r := 0; r < a.Rows(); r++ {
		idx, val := a.Row(r)
		for i, j := range idx {
			out[r*f+int(j)] = val[i]
		}
	}
	return out
}

// encodeRows is how many rows Encode computes densely at a time:
// (512, 24576) float32 is 50 MB. BenchmarkMatMul in internal/kernels: the
// 768 → 24,576 GEMM ran at 249 GFLOP/s with 256 rows and 283–301 with 512
// (OpenBLAS SkylakeX, 2 cores).
const encodeRows = 512

// Encoder holds the buffers for encoding; reuse one across batches. It is
// not safe for concurrent use.
type Encoder struct {
	tc     *Transcoder
	sae    []float32 // (encodeRows, C) x − b_dec
	hidden []float32 // (encodeRows, F) hidden_pre
	counts []int64   // (encodeRows)
	cut    []float32 // (F) max(0, threshold) for JumpReLU; nil for ReLU
}

// NewEncoder returns an Encoder for tc.
func (tc *Transcoder) NewEncoder() *Encoder {
	e := &Encoder{
		tc:     tc,
		sae:    make([]float32, encodeRows*tc.DIn),
		hidden: make([]float32, encodeRows*tc.DSAE),
		counts: make([]int64, encodeRows),
	}
	if tc.Threshold != nil {
		e.cut = make([]float32, tc.DSAE)
		for j, t := range tc.Threshold {
			e.cut[j] = max(t, 0)
		}
	}
	return e
}

// Encode sets acts to the feature activations relu((x − b_dec) @ W_enc +
// b_enc) of x (M, C), keeping only those > 0. acts' slices are
// reused when they have room. With a Threshold (JumpReLU) a feature is
// kept only where its pre-activation also exceeds its threshold, as
// SAELens's JumpReLU transcoder computes relu(pre)·(pre > threshold).
func (e *Encoder) Encode(acts *Acts, x []float32, m int) {
	tc := e.tc
	c, f := tc.DIn, tc.DSAE
	if len(x) != m*c {
		panic(fmt.Sprintf("transcoder: Encode x has length %d, want %d×%d", len(x), m, c))
	}
	acts.Indptr = append(acts.Indptr[:0], 0)
	acts.Indices, acts.Values = acts.Indices[:0], acts.Values[:0]
	for r0 := 0; r0 < m; r0 += encodeRows {
		k := min(encodeRows, m-r0)
		sae, hidden := e.sae[:k*c], e.hidden[:k*f]
		for i := range sae {
			sae[i] = x[r0*c+i] - tc.BDec[i%c]
		}
		kernels.Linear(hidden, sae, tc.WEnc, tc.BEnc, k, c, f)
		// Count, then fill: rows are independent, so both passes run in
		// parallel and the CSR stays in row order.
		counts := e.counts[:k]
		cut := e.cut
		par.For(k, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				n := int64(0)
				if cut == nil {
					for _, v := range hidden[r*f : (r+1)*f] {
						if v > 0 {
							n++
						}
					}
				} else {
					for j, v := range hidden[r*f : (r+1)*f] {
						if v > cut[j] {
							n++
						}
					}
				}
				counts[r] = n
			}
		})
		base := int64(len(acts.Indices))
		total := base
		for _, n := range counts {
			total += n
			acts.Indptr = append(acts.Indptr, total)
		}
		acts.Indices = grow(acts.Indices, int(total))
		acts.Values = grow(acts.Values, int(total))
		ptr := acts.Indptr[r0:]
		par.For(k, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				j := ptr[r]
				if cut == nil {
					for idx, v := range hidden[r*f : (r+1)*f] {
						if v > 0 {
							acts.Indices[j] = int32(idx)
							acts.Values[j] = v
							j++
						}
					}
					continue
				}
				for idx, v := range hidden[r*f : (r+1)*f] {
					if v > cut[idx] {
						acts.Indices[j] = int32(idx)
						acts.Values[j] = v
						j++
					}
				}
			}
		})
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	out := make([]T, n, n+n/4)
	copy(out, s)
	return out
}

// Decode sets out (M, DOut) to acts @ W_dec + b_dec_out, summing only the
// active rows of W_dec.
func (tc *Transcoder) Decode(out []float32, acts *Acts) {
	m, d := acts.Rows(), tc.DOut
	if len(out) != m*d {
		panic(fmt.Sprintf("transcoder: Decode out has length %d, want %d×%d", len(out), m, d))
	}
	par.For(m, func(lo, hi int) {
		acc := make([]float64, d)
		for r := lo; r < hi; r++ {
			for j, b := range tc.BDecOut {
				acc[j] = float64(b)
			}
			idx, val := acts.Row(r)
			for i, fi := range idx {
				v := float64(val[i])
				for j, w := range tc.WDec[int(fi)*d : (int(fi)+1)*d] {
					acc[j] += v * float64(w)
				}
			}
			for j := range acc {
				out[r*d+j] = float32(acc[j])
			}
		}
	})
}

// EncodeNaive is the reference for Encode: the dense pre-activations
// (x − b_dec) @ W_enc + b_enc in float64, returning hidden_pre (M, F).
func (tc *Transcoder) EncodeNaive(x []float32, m int) []float32 {
	c, f := tc.DIn, tc.DSAE
	hidden := make([]float32, m*f)
	for r := 0; r < m; r++ {
		for j := 0; j < f; j++ {
			s := float64(tc.BEnc[j])
			for i := 0; i < c; i++ {
				s += (float64(x[r*c+i]) - float64(tc.BDec[i])) * float64(tc.WEnc[i*f+j])
			}
			hidden[r*f+j] = float32(s)
		}
	}
	return hidden
}
