package torchfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

const (
	maxInt = int(^uint(0) >> 1)
	// maxDims bounds tensor rank, as torch's own kernels do (64 dims).
	maxDims = 64
)

// Tensor is a strided view of a storage, as torch defines it: element with
// multi-index i is storage element Offset + Σ_k i_k·Stride_k.
type Tensor struct {
	// DType is "float32", "float16", "bfloat16", "float64", "int64",
	// "int32", "int16", "int8", "uint8" or "bool".
	DType  string
	Shape  []int // (d0, d1, …), row-major; empty for a scalar
	Stride []int // (len(Shape)), in elements
	Offset int   // storage offset, in elements
	// RequiresGrad is the flag torch saved (true for most nn.Parameters).
	RequiresGrad bool

	storage     *storageView
	maxExpanded int
}

// rootStorage is one serialised storage: zip record data/<key>, or one
// block of a legacy file's tail.
type rootStorage struct {
	key, location string
	dtype         string // of the storage class that named it
	numel, nbytes int
	data          []byte   // (nbytes); nil until a legacy file's tail is read
	owner         *mapping // keeps a mapped file alive while tensors use it
}

// storageView is the storage a tensor indexes: a whole root, or the byte
// range [off, off+n) of it named by legacy view metadata.
type storageView struct {
	root   *rootStorage
	off, n int // bytes
}

// Numel returns the number of elements, the product of Shape.
func (t *Tensor) Numel() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Location returns the device tag the storage was saved from ("cpu",
// "cuda:0", …); the data itself is always in host memory here.
func (t *Tensor) Location() string {
	if t.storage == nil {
		return ""
	}
	return t.storage.root.location
}

// numelChecked validates the view against its storage and returns the
// element count. Fields are exported and may have been edited, so every
// read calls it again.
func (t *Tensor) numelChecked() (int, error) {
	if t.storage == nil {
		return 0, errors.New("tensor has no storage")
	}
	es := elemSize[t.DType]
	if es == 0 {
		return 0, fmt.Errorf("unsupported dtype %q", t.DType)
	}
	if len(t.Shape) != len(t.Stride) {
		return 0, fmt.Errorf("shape %v and stride %v differ in length", t.Shape, t.Stride)
	}
	if len(t.Shape) > maxDims {
		return 0, fmt.Errorf("%d dimensions, more than %d", len(t.Shape), maxDims)
	}
	if t.Offset < 0 {
		return 0, fmt.Errorf("negative storage offset %d", t.Offset)
	}
	empty := false
	for k, s := range t.Shape {
		if s < 0 || t.Stride[k] < 0 {
			return 0, fmt.Errorf("shape %v stride %v: negative entry", t.Shape, t.Stride)
		}
		empty = empty || s == 0
	}
	if empty {
		return 0, nil
	}
	numel, last := 1, t.Offset // last: storage index of the last element
	for k, s := range t.Shape {
		if numel > maxInt/s {
			return 0, fmt.Errorf("shape %v: element count overflows", t.Shape)
		}
		numel *= s
		if st := t.Stride[k]; s > 1 && st > 0 {
			if st > (maxInt-last)/(s-1) {
				return 0, fmt.Errorf("shape %v stride %v offset %d: storage index overflows", t.Shape, t.Stride, t.Offset)
			}
			last += (s - 1) * st
		}
	}
	avail := t.storage.n / es
	if last >= avail {
		return 0, fmt.Errorf("view (shape %v, stride %v, offset %d) reaches element %d of a storage with %d %s elements",
			t.Shape, t.Stride, t.Offset, last, avail, t.DType)
	}
	if limit := t.maxExpandedOrDefault(); numel > avail && numel > limit {
		return 0, fmt.Errorf("shape %v has %d elements over a storage of %d, more than the %d allowed for expanded tensors",
			t.Shape, numel, avail, limit)
	}
	return numel, nil
}

func (t *Tensor) maxExpandedOrDefault() int {
	if t.maxExpanded > 0 {
		return t.maxExpanded
	}
	return DefaultMaxExpandedElements
}

// dim is one axis of a collapsed layout; stride in bytes.
type dim struct{ size, stride int }

// layout is a validated tensor view ready to be read run by run.
type layout struct {
	data  []byte // the storage view's bytes
	base  int    // byte offset of element 0 in data
	es    int
	numel int
	dims  []dim // outer → inner, size-1 axes dropped, contiguous axes merged
}

// view validates t and returns its element count and the bytes of its
// storage view.
func (t *Tensor) view() (numel int, data []byte, err error) {
	numel, err = t.numelChecked()
	if err != nil {
		return 0, nil, err
	}
	sv := t.storage
	if sv.root.data == nil || sv.off+sv.n > len(sv.root.data) {
		return 0, nil, fmt.Errorf("storage %q has no data", sv.root.key)
	}
	return numel, sv.root.data[sv.off : sv.off+sv.n], nil
}

func (t *Tensor) layout() (*layout, error) {
	numel, data, err := t.view()
	if err != nil {
		return nil, err
	}
	es := elemSize[t.DType]
	l := &layout{data: data, base: t.Offset * es, es: es, numel: numel}
	for k, s := range t.Shape {
		if s == 1 {
			continue
		}
		st := t.Stride[k] * es
		if n := len(l.dims); n > 0 && l.dims[n-1].stride == s*st {
			l.dims[n-1] = dim{l.dims[n-1].size * s, st}
			continue
		}
		l.dims = append(l.dims, dim{s, st})
	}
	return l, nil
}

// runs calls fn for each maximal run along the innermost axis: n elements
// starting at byte src of l.data, step bytes apart, going to dst..dst+n.
func (l *layout) runs(fn func(dst, src, n, step int)) {
	if l.numel == 0 {
		return
	}
	if len(l.dims) == 0 {
		fn(0, l.base, 1, l.es)
		return
	}
	outer, inner := l.dims[:len(l.dims)-1], l.dims[len(l.dims)-1]
	idx := make([]int, len(outer))
	src := l.base
	for dst := 0; dst < l.numel; dst += inner.size {
		fn(dst, src, inner.size, inner.stride)
		for k := len(outer) - 1; k >= 0; k-- { // odometer
			idx[k]++
			src += outer[k].stride
			if idx[k] < outer[k].size {
				break
			}
			src -= idx[k] * outer[k].stride
			idx[k] = 0
		}
	}
}

// Float32 returns the elements in row-major order as float32: exact for
// float32, float16 and bfloat16, rounded to nearest for float64 and large
// integers (as torch's .float() does), 0/1 for bool.
func (t *Tensor) Float32() ([]float32, error) {
	l, err := t.layout()
	if err != nil {
		return nil, fmt.Errorf("tensor: %w", err)
	}
	out := make([]float32, l.numel)
	dt := t.DType
	l.runs(func(dst, src, n, step int) { float32Run(out[dst:dst+n], l.data, src, step, dt) })
	runtime.KeepAlive(t.storage) // l.data may be mapped memory owned via t.storage
	return out, nil
}

// Int64 returns the elements of an integer or bool tensor in row-major order.
func (t *Tensor) Int64() ([]int64, error) {
	switch t.DType {
	case "int64", "int32", "int16", "int8", "uint8", "bool":
	default:
		return nil, fmt.Errorf("tensor: Int64 of a %s tensor", t.DType)
	}
	l, err := t.layout()
	if err != nil {
		return nil, fmt.Errorf("tensor: %w", err)
	}
	out := make([]int64, l.numel)
	dt := t.DType
	l.runs(func(dst, src, n, step int) { int64Run(out[dst:dst+n], l.data, src, step, dt) })
	runtime.KeepAlive(t.storage)
	return out, nil
}

// float32Run decodes len(dst) elements of type dt from b, the first at
// byte off, each step bytes after the previous.
func float32Run(dst []float32, b []byte, off, step int, dt string) {
	le := binary.LittleEndian
	switch dt {
	case "float32":
		if step == 4 { // contiguous: the bulk path that dominates loading
			b = b[off : off+4*len(dst)]
			for i := range dst {
				// A 3-index slice of fixed length lets the compiler drop the
				// bounds checks that le.Uint32(b[4*i:]) would keep in this
				// hot loop.
				dst[i] = math.Float32frombits(le.Uint32(b[4*i : 4*i+4 : 4*i+4]))
			}
			return
		}
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(b[off:]))
			off += step
		}
	case "float16":
		for i := range dst {
			dst[i] = dtype.Float16ToFloat32(le.Uint16(b[off:]))
			off += step
		}
	case "bfloat16":
		for i := range dst {
			dst[i] = dtype.BFloat16ToFloat32(le.Uint16(b[off:]))
			off += step
		}
	case "float64":
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(b[off:])))
			off += step
		}
	default:
		for i := range dst {
			dst[i] = float32(intAt(b, off, dt))
			off += step
		}
	}
}

func int64Run(dst []int64, b []byte, off, step int, dt string) {
	if dt == "int64" && step == 8 {
		b = b[off : off+8*len(dst)]
		for i := range dst {
			dst[i] = int64(binary.LittleEndian.Uint64(b[8*i : 8*i+8 : 8*i+8]))
		}
		return
	}
	for i := range dst {
		dst[i] = intAt(b, off, dt)
		off += step
	}
}

// intAt decodes one integer or bool element at byte off.
func intAt(b []byte, off int, dt string) int64 {
	le := binary.LittleEndian
	switch dt {
	case "int64":
		return int64(le.Uint64(b[off:]))
	case "int32":
		return int64(int32(le.Uint32(b[off:])))
	case "int16":
		return int64(int16(le.Uint16(b[off:])))
	case "int8":
		return int64(int8(b[off]))
	case "uint8":
		return int64(b[off])
	case "bool":
		if b[off] != 0 {
			return 1
		}
		return 0
	}
	panic("torchfile: intAt of " + dt)
}

// float32Naive is the reference for Float32: one element at a time, the
// storage index computed from scratch with division. Tests compare the two.
func (t *Tensor) float32Naive() ([]float32, error) {
	numel, data, err := t.view()
	if err != nil {
		return nil, err
	}
	es := elemSize[t.DType]
	out := make([]float32, numel)
	for i := range out {
		idx, rem := t.Offset, i
		for k := len(t.Shape) - 1; k >= 0; k-- {
			idx += (rem % t.Shape[k]) * t.Stride[k]
			rem /= t.Shape[k]
		}
		e := data[idx*es : (idx+1)*es]
		switch t.DType {
		case "float32":
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(e))
		case "float16":
			out[i] = dtype.Float16ToFloat32(binary.LittleEndian.Uint16(e))
		case "bfloat16":
			out[i] = dtype.BFloat16ToFloat32(binary.LittleEndian.Uint16(e))
		case "float64":
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(e)))
		default:
			out[i] = float32(intAt(e, 0, t.DType))
		}
	}
	runtime.KeepAlive(t.storage)
	return out, nil
}
