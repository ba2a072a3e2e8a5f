//go:build cuda || cudasim

package cuda

// Kernel-level tests: each kernel of kernels.cu alone against its CPU twin
// (or, where the CPU has none as a function of its own, a plain loop in
// float64), at shapes that cross its block and chunk sizes. They run on
// the GPU in scripts/gpu-check.sh and on the simulated device in make
// test-sim. Where the kernel does the twin's float32 operations in the
// same order the results must be equal bit for bit; where it sums in
// another order (block reductions) or uses the GPU's fast exp, to a stated
// tolerance.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// upload copies src to a new device buffer that the test frees at its end.
// The context must be current.
func upload[T int32 | int64 | float32 | float64](t *testing.T, src []T) buf {
	t.Helper()
	b := scratch[T](t, len(src))
	if err := h2d(b, src); err != nil {
		t.Fatal(err)
	}
	return b
}

// scratch allocates n elements of T on the device, freed at the test's end.
func scratch[T int32 | int64 | float32 | float64](t *testing.T, n int) buf {
	t.Helper()
	var zero T
	b, err := dev.alloc("test buffer", int64(n)*int64(unsafe.Sizeof(zero)))
	if err != nil {
		t.Fatal(err)
	}
	b.n = n
	t.Cleanup(func() {
		defer dev.enter()()
		dev.free(&b)
	})
	return b
}

// download copies the first n elements of b to a new slice.
func download[T int32 | int64 | float32 | float64](t *testing.T, b buf, n int) []T {
	t.Helper()
	out := make([]T, n)
	if err := d2h(out, b); err != nil {
		t.Fatal(err)
	}
	return out
}

func launchSync(t *testing.T, name string, grid, block int, args ...any) {
	t.Helper()
	if err := dev.launch(name, grid, block, args...); err != nil {
		t.Fatal(err)
	}
	if err := dev.sync(name); err != nil {
		t.Fatal(err)
	}
}

// sameBits fails the test where got and want differ in any bit.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if !testutil.SameBits(got, want) {
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s: element %d is %g, want %g (and maybe more)", what, i, got[i], want[i])
				return
			}
		}
	}
}

// embed is W_E[token] + W_pos[position], bit for bit.
func TestKernelEmbed(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(1, 1))
	v, tt, rows, c := 50, 7, 3, 300
	we, wpos := testutil.RandNormal(r, v*c, 1), testutil.RandNormal(r, tt*c, 1)
	tok := make([]int32, rows*tt)
	for i := range tok {
		tok[i] = int32(r.IntN(v))
	}
	out := scratch[float32](t, rows*tt*c)
	launchSync(t, "embed", rows*tt, 256, out, upload(t, tok), upload(t, we), upload(t, wpos), tt, c)
	want := make([]float32, rows*tt*c)
	for i, k := range tok {
		for j := 0; j < c; j++ {
			want[i*c+j] = we[int(k)*c+j] + wpos[(i%tt)*c+j]
		}
	}
	sameBits(t, "embed", download[float32](t, out, len(want)), want)
}

// layernorm_pre is kernels.LayerNormPre (float64 sums, in another order:
// the results may differ in the last bit), into another buffer and in
// place.
func TestKernelLayerNormPre(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(2, 2))
	m, c, eps := 5, 1000, 1e-5
	x := testutil.RandNormal(r, m*c, 3)
	for i := range x {
		x[i] += 2 // a mean to remove
	}
	want := make([]float32, m*c)
	kernels.LayerNormPre(want, x, m, c, eps)
	src, dst := upload(t, x), scratch[float32](t, m*c)
	launchSync(t, "layernorm_pre", m, 256, dst, src, c, float32(eps))
	testutil.Close(t, "layernorm_pre", download[float32](t, dst, m*c), want, 0, 3e-7)
	launchSync(t, "layernorm_pre", m, 256, src, src, c, float32(eps))
	testutil.Close(t, "layernorm_pre in place", download[float32](t, src, m*c), want, 0, 3e-7)
}

// add_inplace and sub_bias are one float32 operation per element: bit for
// bit.
func TestKernelAddSubBias(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(3, 3))
	m, c := 9, 333
	a, b, bias := testutil.RandNormal(r, m*c, 1), testutil.RandNormal(r, m*c, 1), testutil.RandNormal(r, c, 1)
	da := upload(t, a)
	launchSync(t, "add_inplace", dev.grid1D(m*c), 256, da, upload(t, b), m*c)
	want := make([]float32, m*c)
	for i := range want {
		want[i] = a[i] + b[i]
	}
	sameBits(t, "add_inplace", download[float32](t, da, m*c), want)
	out := scratch[float32](t, m*c)
	launchSync(t, "sub_bias", dev.grid1D(m*c), 256, out, upload(t, a), upload(t, bias), m, c)
	for i := range want {
		want[i] = a[i] - bias[i%c]
	}
	sameBits(t, "sub_bias", download[float32](t, out, m*c), want)
}

// bias_act adds the bias to pre (bit for bit) and applies the activation:
// ReLU bit for bit, gelu_new to kernels.GeluNew's float32 accuracy (the
// GPU's tanhf and the CPU's polynomial differ in the last bits); with no
// bias pre is left alone, and out may be pre itself.
func TestKernelBiasAct(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(4, 4))
	m, n := 7, 1111
	pre, bias := testutil.RandNormal(r, m*n, 2), testutil.RandNormal(r, n, 1)
	for _, act := range []int{actNone, actGeluNew, actReLU} {
		for _, withBias := range []bool{true, false} {
			for _, inPlace := range []bool{false, true} {
				name := fmt.Sprintf("bias_act act=%d bias=%v in-place=%v", act, withBias, inPlace)
				dpre := upload(t, pre)
				out := dpre
				if !inPlace {
					out = scratch[float32](t, m*n)
				}
				db := buf{}
				wantPre := slices.Clone(pre)
				if withBias {
					db = upload(t, bias)
					for i := range wantPre {
						wantPre[i] += bias[i%n]
					}
				}
				launchSync(t, "bias_act", dev.grid1D(m*n), 256, out, dpre, db, m, n, act)
				if !inPlace {
					sameBits(t, name+": pre", download[float32](t, dpre, m*n), wantPre)
				}
				want := slices.Clone(wantPre)
				switch act {
				case actGeluNew:
					kernels.GeluNew(want, wantPre)
				case actReLU:
					for i, v := range wantPre {
						want[i] = max(v, 0)
					}
				}
				got := download[float32](t, out, m*n)
				if act == actGeluNew {
					testutil.Close(t, name, got, want, 1e-7, 1e-6)
				} else {
					sameBits(t, name, got, want)
				}
			}
		}
	}
}

// causal_softmax is softmax(scale·s[0..p]) over each row's causal prefix
// (zeros after it), against float64 with math.Exp: the GPU's __expf is
// within a few ulps.
func TestKernelCausalSoftmax(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(5, 5))
	bh, tt := 3, 300 // rows of 300 > the block of 128
	scale := float32(0.125)
	s := testutil.RandNormal(r, bh*tt*tt, 8)
	ds := upload(t, s)
	launchSync(t, "causal_softmax", bh*tt, 128, ds, tt, scale)
	want := make([]float32, len(s))
	for row := 0; row < bh*tt; row++ {
		p := row % tt
		x := s[row*tt : (row+1)*tt]
		mx := math.Inf(-1)
		for j := 0; j <= p; j++ {
			mx = math.Max(mx, float64(x[j]*scale))
		}
		sum := 0.0
		for j := 0; j <= p; j++ {
			sum += math.Exp(float64(x[j]*scale) - mx)
		}
		for j := 0; j <= p; j++ {
			want[row*tt+j] = float32(math.Exp(float64(x[j]*scale)-mx) / sum)
		}
	}
	testutil.Close(t, "causal_softmax", download[float32](t, ds, len(s)), want, 1e-8, 2e-6)
}

// split_heads lays qkv (B·T, 3C) out as (3, B, H, T, D) and merge_heads
// puts (B, H, T, D) back as (B·T, C): pure moves, checked element by
// element against the layout.
func TestKernelSplitMergeHeads(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(6, 6))
	b, tt, h, d := 2, 5, 3, 100 // 3C = 900 > the block of 256
	c := h * d
	qkv := testutil.RandNormal(r, b*tt*3*c, 1)
	heads := scratch[float32](t, len(qkv))
	launchSync(t, "split_heads", b*tt, 256, heads, upload(t, qkv), b, tt, h, d)
	got := download[float32](t, heads, len(qkv))
	want := make([]float32, len(qkv))
	for bi := 0; bi < b; bi++ {
		for p := 0; p < tt; p++ {
			for x := 0; x < 3; x++ {
				for i := 0; i < h; i++ {
					for e := 0; e < d; e++ {
						want[x*b*tt*c+((bi*h+i)*tt+p)*d+e] = qkv[(bi*tt+p)*3*c+x*c+i*d+e]
					}
				}
			}
		}
	}
	sameBits(t, "split_heads", got, want)
	z := scratch[float32](t, b*tt*c)
	launchSync(t, "merge_heads", b*tt, 256, z, heads, b, tt, h, d) // Q's part, merged back
	wantZ := make([]float32, b*tt*c)
	for row := 0; row < b*tt; row++ {
		copy(wantZ[row*c:(row+1)*c], qkv[row*3*c:row*3*c+c])
	}
	sameBits(t, "merge_heads", download[float32](t, z, b*tt*c), wantZ)
}

// encode_count, exclusive_scan and encode_fill compact h + b_enc > 0 to
// CSR exactly as transcoder.Encoder does (the same float32 sums, ascending
// features); the scan crosses its 1024-row chunks; with room for only part
// of the entries nothing is written past it (on the simulated device a
// write past a buffer faults).
func TestKernelEncodeCompaction(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(7, 7))
	m, f := 1500, 700
	h, benc := testutil.RandNormal(r, m*f, 1), testutil.RandNormal(r, f, 1)
	for i := range benc {
		benc[i] -= 1.5 // most entries off, as in a transcoder
	}
	var wantPtr []int64
	var wantIdx []int32
	var wantVal []float32
	wantPtr = append(wantPtr, 0)
	for row := 0; row < m; row++ {
		for j := 0; j < f; j++ {
			if v := h[row*f+j] + benc[j]; v > 0 {
				wantIdx = append(wantIdx, int32(j))
				wantVal = append(wantVal, v)
			}
		}
		wantPtr = append(wantPtr, int64(len(wantIdx)))
	}
	nnz := len(wantIdx)
	dh, db := upload(t, h), upload(t, benc)
	counts, indptr := scratch[int64](t, m), scratch[int64](t, m+1)
	launchSync(t, "encode_count", m, 256, dh, db, counts, f)
	launchSync(t, "exclusive_scan", 1, 1024, indptr, counts, m)
	if got := download[int64](t, indptr, m+1); !slices.Equal(got, wantPtr) {
		t.Fatalf("indptr differs from the CPU's: ends at %d, want %d", got[m], wantPtr[m])
	}
	for _, room := range []int{nnz, nnz / 2} {
		idx, val := scratch[int32](t, room), scratch[float32](t, room)
		launchSync(t, "encode_fill", m, 256, dh, db, indptr, idx, val, f, int64(room))
		if got := download[int32](t, idx, room); !slices.Equal(got, wantIdx[:room]) {
			t.Errorf("room for %d of %d entries: indices differ from the CPU's", room, nnz)
		}
		sameBits(t, fmt.Sprintf("room for %d of %d entries: values", room, nnz), download[float32](t, val, room), wantVal[:room])
	}
}

// csr is a random sparse (rows, f) matrix with ascending features per row.
func csr(r *rand.Rand, rows, f, perRow int) (indptr []int64, idx []int32, val []float32) {
	indptr = []int64{0}
	for row := 0; row < rows; row++ {
		k := r.IntN(2 * perRow)
		feats := r.Perm(f)[:k]
		slices.Sort(feats)
		for _, j := range feats {
			idx = append(idx, int32(j))
			val = append(val, float32(r.Float64()*3))
		}
		indptr = append(indptr, int64(len(idx)))
	}
	return indptr, idx, val
}

// gather_mid is b_mid + Σ val·W_mid[idx] per row, and scatter_grad adds
// val·dmid[row] into W_mid's gradient rows and Σ dmid into b_mid's,
// against float64 sums (the kernels sum in float32, scatter_grad in no
// fixed order).
func TestKernelGatherScatter(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(8, 8))
	rows, f, c := 40, 60, 300
	indptr, idx, val := csr(r, rows, f, 8)
	wmid, bmid := testutil.RandNormal(r, f*c, 1), testutil.RandNormal(r, c, 1)
	dIndptr, dIdx, dVal := upload(t, indptr), upload(t, idx), upload(t, val)
	mid := scratch[float32](t, rows*c)
	launchSync(t, "gather_mid", rows, 256, mid, dIndptr, dIdx, dVal, upload(t, wmid), upload(t, bmid), c)
	want := make([]float32, rows*c)
	for row := 0; row < rows; row++ {
		for j := 0; j < c; j++ {
			s := float64(bmid[j])
			for k := indptr[row]; k < indptr[row+1]; k++ {
				s += float64(val[k]) * float64(wmid[int(idx[k])*c+j])
			}
			want[row*c+j] = float32(s)
		}
	}
	testutil.Close(t, "gather_mid", download[float32](t, mid, rows*c), want, 1e-5, 1e-5)

	dmid := testutil.RandNormal(r, rows*c, 1)
	gw, gb := scratch[float32](t, f*c), scratch[float32](t, c)
	if err := zero(gw, gw.bytes); err != nil {
		t.Fatal(err)
	}
	if err := zero(gb, gb.bytes); err != nil {
		t.Fatal(err)
	}
	launchSync(t, "scatter_grad", rows, 256, gw, gb, dIndptr, dIdx, dVal, upload(t, dmid), c)
	wantW, wantB := make([]float64, f*c), make([]float64, c)
	for row := 0; row < rows; row++ {
		for j := 0; j < c; j++ {
			wantB[j] += float64(dmid[row*c+j])
			for k := indptr[row]; k < indptr[row+1]; k++ {
				wantW[int(idx[k])*c+j] += float64(val[k]) * float64(dmid[row*c+j])
			}
		}
	}
	testutil.Close(t, "scatter_grad W_mid", download[float32](t, gw, f*c), dtype.Float32s(wantW), 1e-5, 1e-5)
	testutil.Close(t, "scatter_grad b_mid", download[float32](t, gb, c), dtype.Float32s(wantB), 1e-5, 1e-5)
}

// pairNear fails the test unless got is [a, b] to 1e-12 relative (float64
// sums in another order).
func pairNear(t *testing.T, what string, got []float64, a, b float64) {
	t.Helper()
	if math.Abs(got[0]-a) > 1e-12*math.Abs(a) || math.Abs(got[1]-b) > 1e-12*math.Abs(b) {
		t.Errorf("%s %v, want [%v %v]", what, got, a, b)
	}
}

// mse_grad writes each block's Σ(out − y)² and Σy² (float64) and sets out
// to scale·(out − y) (float32, bit for bit); sum_pairs adds the blocks'
// sums (in another order than a plain loop: to 1e-12), over more elements
// than the grid covers in one stride.
func TestKernelMSEGrad(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(9, 9))
	n := 100003
	out, y := testutil.RandNormal(r, n, 1), testutil.RandNormal(r, n, 1)
	scale := float32(2 / float64(n))
	grid := max(1, dev.grid1D(n)/4)
	dout, partials, sums := upload(t, out), scratch[float64](t, 2*grid), scratch[float64](t, 2)
	launchSync(t, "mse_grad", grid, 256, dout, upload(t, y), n, scale, partials)
	launchSync(t, "sum_pairs", 1, 1024, sums, partials, grid)
	var se, sy float64
	want := make([]float32, n)
	for i := range out {
		d := float64(out[i]) - float64(y[i])
		se += d * d
		sy += float64(y[i]) * float64(y[i])
		want[i] = scale * (out[i] - y[i])
	}
	sameBits(t, "mse_grad gradient", download[float32](t, dout, n), want)
	pairNear(t, "mse_grad sums", download[float64](t, sums, 2), se, sy)
}

// The deterministic scatter ("csc_count", "csc_totals", "exclusive_scan",
// "csc_starts", "csc_fill", "csc_grad", "col_sum", through
// sortedScatter.scatter) gives midcoder.Trainer's gradients bit for bit: W_mid's row f
// summed over the rows where f is active in ascending order, each product
// and sum rounded to float32; b_mid's in float64 over the rows in order.
// 600 rows make two full chunks and a partial one; some features are
// active nowhere (their rows must be zero, over a buffer that was not);
// the entry buffers start too small and grow.
func TestKernelSortedScatter(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(12, 12))
	rows, f, c := 600, 90, 300
	indptr, idx, val := csr(r, rows, f-10, 6) // features 80..89 never active
	dmid := testutil.RandNormal(r, rows*c, 1)
	nnz := len(idx)
	acts := &Acts{M: rows, NNZ: nnz, indptr: upload(t, indptr), idx: upload(t, idx), val: upload(t, val), capNNZ: nnz}
	g := (rows + cscRows - 1) / cscRows
	s := &sortedScatter{counts: scratch[int64](t, f*g), starts: scratch[int64](t, f*g+1),
		totals: scratch[int64](t, f), colptr: scratch[int64](t, f+1)}
	var err error
	if s.rowT, err = dev.alloc("rows", 4); err != nil { // one entry: scatter must grow them
		t.Fatal(err)
	}
	if s.valT, err = dev.alloc("values", 4); err != nil {
		t.Fatal(err)
	}
	s.capNNZ = 1
	t.Cleanup(func() {
		defer dev.enter()()
		dev.free(&s.rowT)
		dev.free(&s.valT)
	})
	gw, gb := scratch[float32](t, f*c), scratch[float32](t, c) // 0xff… on the simulated device
	if err := s.scatter(dev, acts, gw, gb, upload(t, dmid), f, c); err != nil {
		t.Fatal(err)
	}
	if err := dev.sync("sorted scatter"); err != nil {
		t.Fatal(err)
	}
	wantW := make([]float32, f*c)
	wantB64 := make([]float64, c)
	for row := 0; row < rows; row++ {
		d := dmid[row*c : (row+1)*c]
		for k := indptr[row]; k < indptr[row+1]; k++ {
			w := wantW[int(idx[k])*c:]
			for j := range d {
				w[j] += float32(val[k] * d[j])
			}
		}
		for j, v := range d {
			wantB64[j] += float64(v)
		}
	}
	sameBits(t, "sorted scatter W_mid", download[float32](t, gw, f*c), wantW)
	sameBits(t, "sorted scatter b_mid", download[float32](t, gb, c), dtype.Float32s(wantB64))
	if s.capNNZ < nnz {
		t.Errorf("entry buffers hold %d, need %d", s.capNNZ, nnz)
	}
}

// relu_grad is kernels.ReLUBackward bit for bit; gelu_new_grad is
// kernels.GeluNewBackward (both in float64; tanh may differ in its last
// float64 bit, which float32 rounding almost always hides).
func TestKernelActivationGrads(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(10, 10))
	n := 50000
	dh, pre := testutil.RandNormal(r, n, 1), testutil.RandNormal(r, n, 2)
	pre[0], pre[1] = 0, float32(math.Copysign(0, -1)) // the boundary: zeroed, as on the CPU
	want := slices.Clone(dh)
	kernels.ReLUBackward(want, pre)
	d := upload(t, dh)
	launchSync(t, "relu_grad", dev.grid1D(n), 256, d, upload(t, pre), int64(n))
	sameBits(t, "relu_grad", download[float32](t, d, n), want)

	want = slices.Clone(dh)
	kernels.GeluNewBackward(want, pre)
	d = upload(t, dh)
	launchSync(t, "gelu_new_grad", dev.grid1D(n), 256, d, upload(t, pre), int64(n))
	testutil.Close(t, "gelu_new_grad", download[float32](t, d, n), want, 0, 2e-7)
}

// adamw is kernels.AdamWStep.Update bit for bit (the same float32
// operations in the same order, none fused), with a gradient and with none.
func TestKernelAdamW(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(11, 11))
	n := 10007
	theta, m, g := testutil.RandNormal(r, n, 0.1), testutil.RandNormal(r, n, 0.01), testutil.RandNormal(r, n, 0.01)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Float64() * 1e-4)
	}
	k := kernels.TorchAdamWStep(1e-3, 1e-3, 0.9, 0.999, 1e-8, 3)
	for _, withGrad := range []bool{true, false} {
		wt, wm, wv := slices.Clone(theta), slices.Clone(m), slices.Clone(v)
		var wg []float32
		dg := buf{}
		if withGrad {
			wg = g
			dg = upload(t, g)
		}
		k.Update(wt, wm, wv, wg)
		dt, dm, dv := upload(t, theta), upload(t, m), upload(t, v)
		launchSync(t, "adamw", dev.grid1D(n), 256, dt, dm, dv, dg, n, k.Decay, k.B1, k.B1c, k.B2, k.B2c, k.BC2Sqrt, k.StepSize, k.Eps)
		name := fmt.Sprintf("adamw (gradient %v)", withGrad)
		sameBits(t, name+": θ", download[float32](t, dt, n), wt)
		sameBits(t, name+": m", download[float32](t, dm, n), wm)
		sameBits(t, name+": v", download[float32](t, dv, n), wv)
	}
}

// add_out is one float32 sum per element (bit for bit); sq_err's block
// sums, added by sum_pairs, are Σ(a − y)² and Σ y² to 1e-12.
func TestKernelAddOutSqErr(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(13, 13))
	n := 70001
	a, y := testutil.RandNormal(r, n, 1), testutil.RandNormal(r, n, 1)
	da, dy, out := upload(t, a), upload(t, y), scratch[float32](t, n)
	launchSync(t, "add_out", dev.grid1D(n), 256, out, da, dy, n)
	want := make([]float32, n)
	var se, sy float64
	for i := range want {
		want[i] = a[i] + y[i]
		d := float64(a[i]) - float64(y[i])
		se += d * d
		sy += float64(y[i]) * float64(y[i])
	}
	sameBits(t, "add_out", download[float32](t, out, n), want)
	grid := dev.grid1D(n)
	partials, sums := scratch[float64](t, 2*grid), scratch[float64](t, 2)
	launchSync(t, "sq_err", grid, 256, da, dy, n, partials)
	launchSync(t, "sum_pairs", 1, 1024, sums, partials, grid)
	pairNear(t, "sq_err sums", download[float64](t, sums, 2), se, sy)
}

// decode_rows is transcoder.Transcoder.Decode bit for bit: b_dec_out plus
// the active rows of W_dec in order, summed in float64, rounded once.
func TestKernelDecodeRows(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(14, 14))
	rows, f, c := 30, 70, 300
	indptr, idx, val := csr(r, rows, f, 9)
	tc := transcoder.Random(c, f, 0, 15)
	acts := &transcoder.Acts{Indptr: indptr, Indices: idx, Values: val}
	want := make([]float32, rows*c)
	tc.Decode(want, acts)
	out := scratch[float32](t, rows*c)
	launchSync(t, "decode_rows", rows, 256, out, upload(t, indptr), upload(t, idx), upload(t, val), upload(t, tc.WDec), upload(t, tc.BDecOut), c)
	sameBits(t, "decode_rows", download[float32](t, out, rows*c), want)
}

// cross_entropy is kernels.CrossEntropyRows on every position with a next
// token (float32 max, float64 sum of exponentials; the GPU's expf and the
// CPU's differ by an ulp or so: 1e-6 of the loss), and 0 at each
// sequence's last position; rows of V = 5,000 cross the block.
func TestKernelCrossEntropy(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(16, 16))
	b, tt, v := 3, 9, 5000
	m := b * tt
	logits := testutil.RandNormal(r, m*v, 4)
	tok := make([]int32, m)
	for i := range tok {
		tok[i] = int32(r.IntN(v))
	}
	loss := scratch[float32](t, m)
	launchSync(t, "cross_entropy", m, 256, loss, upload(t, logits), upload(t, tok), tt, v)
	got := download[float32](t, loss, m)
	var rowsWith []int
	var target []int32
	for i := 0; i < m; i++ {
		if i%tt != tt-1 {
			rowsWith = append(rowsWith, i)
			target = append(target, tok[i+1])
		}
	}
	sub := make([]float32, 0, len(rowsWith)*v)
	for _, i := range rowsWith {
		sub = append(sub, logits[i*v:(i+1)*v]...)
	}
	wantSub := make([]float32, len(rowsWith))
	kernels.CrossEntropyRows(wantSub, sub, target, len(rowsWith), v)
	want := make([]float32, m)
	for k, i := range rowsWith {
		want[i] = wantSub[k]
	}
	testutil.Close(t, "cross_entropy", got, want, 1e-6, 1e-6)
}

// act_deriv is φ' as analysis.actDeriv computes it: ReLU's 0/1 (0 at
// pre = 0) and gelu_new's kernels.GeluNewBackward of ones (float64 tanh,
// rounded once: to float32's last bit); masked_drive is dphi[row] ⊙
// drive[feature] per pair, one float32 product: bit for bit.
func TestKernelActDerivMaskedDrive(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(17, 17))
	rows, n, f, p := 6, 700, 20, 50
	pre := testutil.RandNormal(r, rows*n, 2)
	pre[0] = 0
	dpre, dphi := upload(t, pre), scratch[float32](t, rows*n)
	launchSync(t, "act_deriv", dev.grid1D(rows*n), 256, dphi, dpre, int64(rows*n), actReLU)
	want := make([]float32, rows*n)
	for i, x := range pre {
		if x > 0 {
			want[i] = 1
		}
	}
	sameBits(t, "act_deriv ReLU", download[float32](t, dphi, rows*n), want)
	launchSync(t, "act_deriv", dev.grid1D(rows*n), 256, dphi, dpre, int64(rows*n), actGeluNew)
	for i := range want {
		want[i] = 1
	}
	kernels.GeluNewBackward(want, pre)
	got := download[float32](t, dphi, rows*n)
	testutil.Close(t, "act_deriv gelu_new", got, want, 0, 2e-7)

	drive := testutil.RandNormal(r, f*n, 1)
	pr, pf := make([]int32, p), make([]int32, p)
	for i := range pr {
		pr[i], pf[i] = int32(r.IntN(rows)), int32(r.IntN(f))
	}
	a := scratch[float32](t, p*n)
	launchSync(t, "masked_drive", p, 256, a, dphi, upload(t, drive), upload(t, pr), upload(t, pf), n)
	wantA := make([]float32, p*n)
	for i := range pr {
		for j := 0; j < n; j++ {
			wantA[i*n+j] = got[int(pr[i])*n+j] * drive[int(pf[i])*n+j]
		}
	}
	sameBits(t, "masked_drive", download[float32](t, a, p*n), wantA)
}

// effect_sums adds each segment's effects to its feature's float64 sums in
// pair order (bit for bit: the same additions) and, with normSum, each
// pair's norm in pair order (its squares summed in another order: to
// 1e-15); segments of one feature in successive launches continue its sums.
func TestKernelEffectSums(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(18, 18))
	f, c := 12, 300
	feats := []int32{0, 0, 3, 5, 5, 5, 11} // segments: [0,2) [2,3) [3,6) [6,7)
	seg := []int32{0, 2, 3, 6, 7}
	p := len(feats)
	sum, normSum := scratch[float64](t, f*c), scratch[float64](t, f)
	if err := zero(sum, sum.bytes); err != nil {
		t.Fatal(err)
	}
	if err := zero(normSum, normSum.bytes); err != nil {
		t.Fatal(err)
	}
	wantSum, wantNorm := make([]float64, f*c), make([]float64, f)
	dFeats, dSeg := upload(t, feats), upload(t, seg)
	for launch := 0; launch < 2; launch++ {
		e := testutil.RandNormal(r, p*c, 1)
		launchSync(t, "effect_sums", len(seg)-1, 256, sum, normSum, upload(t, e), dFeats, dSeg, c)
		for i, fi := range feats {
			var ss float64
			for j := 0; j < c; j++ {
				v := float64(e[i*c+j])
				wantSum[int(fi)*c+j] += v
				ss += v * v
			}
			wantNorm[fi] += math.Sqrt(ss)
		}
	}
	got := download[float64](t, sum, f*c)
	if !slices.Equal(got, wantSum) {
		t.Error("effect_sums: the sums differ from adding the pairs in order")
	}
	gotNorm := download[float64](t, normSum, f)
	for fi := range wantNorm {
		if math.Abs(gotNorm[fi]-wantNorm[fi]) > 1e-15*math.Max(1, wantNorm[fi]) {
			t.Errorf("effect_sums: feature %d's Σ‖e‖ is %v, want %v", fi, gotNorm[fi], wantNorm[fi])
		}
	}
}

// gate_sums adds each segment's gates φ'(pre(t)) to its feature's Γ in
// float64, pair by pair in order (analysis.EffectAccumulator's order), over
// two launches: the same bits as that loop.
func TestKernelGateSums(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(19, 19))
	f, n, m := 12, 300, 5
	feats := []int32{0, 0, 3, 5, 5, 5, 11} // segments: [0,2) [2,3) [3,6) [6,7)
	rows := []int32{1, 4, 0, 0, 2, 3, 4}
	seg := []int32{0, 2, 3, 6, 7}
	gate := scratch[float64](t, f*n)
	if err := zero(gate, gate.bytes); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, f*n)
	dRows, dFeats, dSeg := upload(t, rows), upload(t, feats), upload(t, seg)
	for launch := 0; launch < 2; launch++ {
		dphi := testutil.RandNormal(r, m*n, 1)
		launchSync(t, "gate_sums", len(seg)-1, 256, gate, upload(t, dphi), dRows, dFeats, dSeg, n)
		for i, fi := range feats {
			for j := 0; j < n; j++ {
				want[int(fi)*n+j] += float64(dphi[int(rows[i])*n+j])
			}
		}
	}
	if !slices.Equal(download[float64](t, gate, f*n), want) {
		t.Error("gate_sums: Γ differs from adding the pairs' gates in order")
	}
}

// gated_drive is drive ⊙ Γ in float64: exact (a float32 times a float64
// rounds once, as Go's float64(d)·g does).
func TestKernelGatedDrive(t *testing.T) {
	defer dev.enter()()
	r := rand.New(rand.NewPCG(20, 20))
	n := 1000
	drive := testutil.RandNormal(r, n, 1)
	g := make([]float64, n)
	for i := range g {
		g[i] = r.NormFloat64() * 50
	}
	v := scratch[float64](t, n)
	launchSync(t, "gated_drive", 2, 128, v, upload(t, drive), upload(t, g), int64(n))
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(drive[i]) * g[i]
	}
	if !slices.Equal(download[float64](t, v, n), want) {
		t.Error("gated_drive differs from float64(drive)·Γ")
	}
}
