//go:build cuda || cudasim

package cuda

import (
	"fmt"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Acts are sparse feature activations on the device in CSR form, as
// transcoder.Acts: indptr int64 (M+1), idx int32 and val float32 (nnz).
type Acts struct {
	M, NNZ   int
	indptr   buf
	idx, val buf
	capNNZ   int
	counts   buf // (M) int64
}

// Encoder is a transcoder's encoder on the device.
type Encoder struct {
	d                *Device
	c, f, maxRows    int
	wenc, benc, bdec buf
	sae, hidden      buf
	all              allocList
}

// LoadEncoder uploads tc's encoder for batches of up to maxRows rows.
func (d *Device) LoadEncoder(tc *transcoder.Transcoder, maxRows int) (*Encoder, error) {
	defer d.enter()()
	e := &Encoder{d: d, c: tc.DIn, f: tc.DSAE, maxRows: maxRows, all: allocList{d: d}}
	a := &e.all
	a.upload(&e.wenc, "W_enc", tc.WEnc)
	a.upload(&e.benc, "b_enc", tc.BEnc)
	a.upload(&e.bdec, "b_dec", tc.BDec)
	a.add(&e.sae, "x − b_dec", maxRows*e.c, 4)
	a.add(&e.hidden, "hidden_pre", maxRows*e.f, 4)
	if err := a.done(); err != nil {
		return nil, err
	}
	return e, nil
}

// Free releases the encoder's device memory.
func (e *Encoder) Free() {
	defer e.d.enter()()
	e.all.freeAll()
}

// NewActs allocates device activations for up to maxRows rows, with room
// for l0 active features per row to start with (they grow when needed).
func (d *Device) NewActs(maxRows, l0 int) (*Acts, error) {
	defer d.enter()()
	a := &Acts{}
	l := allocList{d: d}
	l.add(&a.indptr, "acts indptr", maxRows+1, 8)
	l.add(&a.counts, "acts counts", maxRows, 8)
	l.add(&a.idx, "acts indices", maxRows*l0, 4)
	l.add(&a.val, "acts values", maxRows*l0, 4)
	if err := l.done(); err != nil {
		return nil, err
	}
	a.capNNZ = maxRows * l0
	return a, nil
}

// Free releases a's device memory.
func (d *Device) FreeActs(a *Acts) {
	defer d.enter()()
	for _, b := range []*buf{&a.indptr, &a.counts, &a.idx, &a.val} {
		d.free(b)
	}
}

// encode sets acts to relu((x − b_dec) @ W_enc + b_enc) of the m rows of
// x (a device buffer (m, C)), keeping the entries > 0 in ascending column
// order per row (transcoder.Encoder.Encode). It reads back one number, the
// count of active entries, to size the output. The context must be current.
func (e *Encoder) encode(acts *Acts, x buf, m int) error {
	d, c, f := e.d, e.c, e.f
	if m > e.maxRows || m+1 > acts.indptr.n {
		return fmt.Errorf("cuda: encoding %d rows, room for %d", m, min(e.maxRows, acts.indptr.n-1))
	}
	if err := d.launch("sub_bias", d.grid1D(m*c), 256, e.sae, x, e.bdec, m, c); err != nil {
		return err
	}
	if err := d.gemm(false, false, m, f, c, 1, e.sae.p, c, e.wenc.p, f, 0, e.hidden.p, f); err != nil {
		return err
	}
	if err := d.launch("encode_count", m, 256, e.hidden, e.benc, acts.counts, f); err != nil {
		return err
	}
	if err := d.launch("exclusive_scan", 1, 1024, acts.indptr, acts.counts, m); err != nil {
		return err
	}
	var nnz [1]int64
	if err := d2h(nnz[:], buf{p: acts.indptr.p + devPtr(8*m), bytes: 8}); err != nil {
		return err
	}
	if int(nnz[0]) > acts.capNNZ {
		if err := d.growActs(acts, int(nnz[0])); err != nil {
			return err
		}
	}
	acts.M, acts.NNZ = m, int(nnz[0])
	return d.launch("encode_fill", m, 256, e.hidden, e.benc, acts.indptr, acts.idx, acts.val, f, int64(acts.capNNZ))
}

func (d *Device) growActs(a *Acts, need int) error {
	n, err := d.regrow(need, &a.idx, "acts indices", &a.val, "acts values")
	if err != nil {
		return err
	}
	a.capNNZ = n
	return nil
}

// regrow replaces two buffers of 4-byte elements, indexed alike, by room
// for need elements and a quarter more, and returns that room. Their
// contents are lost.
func (d *Device) regrow(need int, a *buf, whatA string, b *buf, whatB string) (int, error) {
	n := need + need/4
	d.free(a)
	d.free(b)
	var err error
	if *a, err = d.alloc(whatA, int64(n)*4); err != nil {
		return 0, err
	}
	if *b, err = d.alloc(whatB, int64(n)*4); err != nil {
		return 0, err
	}
	a.n, b.n = n, n
	return n, nil
}

// Download copies acts to dst (host CSR).
func (d *Device) Download(dst *transcoder.Acts, a *Acts) error {
	defer d.enter()()
	dst.Indptr = resize(dst.Indptr, a.M+1)
	dst.Indices = resize(dst.Indices, a.NNZ)
	dst.Values = resize(dst.Values, a.NNZ)
	if err := d2h(dst.Indptr, a.indptr); err != nil {
		return err
	}
	if err := d2h(dst.Indices, a.idx); err != nil {
		return err
	}
	return d2h(dst.Values, a.val)
}

func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}
