package safetensors

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// Float32 returns the named tensor as a new []float32 in C order. F32 is
// copied; F16 and BF16 are widened exactly; F64 is rounded to nearest.
func (f *File) Float32(name string) ([]float32, error) {
	t, b, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if err := checkFloat(f, t); err != nil {
		return nil, err
	}
	dst := make([]float32, len(b)/t.DType.Size())
	decodeFloat32(dst, b, t.DType)
	return dst, nil
}

// Float32Into decodes the named tensor into dst, whose length must equal the
// tensor's number of elements. It does not allocate.
func (f *File) Float32Into(dst []float32, name string) error {
	t, b, err := f.lookup(name)
	if err != nil {
		return err
	}
	if err := checkFloat(f, t); err != nil {
		return err
	}
	if n := len(b) / t.DType.Size(); len(dst) != n {
		return f.errorf("tensor %q: destination holds %d values, tensor has %d (shape %v)", name, len(dst), n, t.Shape)
	}
	decodeFloat32(dst, b, t.DType)
	return nil
}

func checkFloat(f *File, t TensorInfo) error {
	if err := checkFloatType(t); err != nil {
		return f.errorf("%v", err)
	}
	return nil
}

// decodeFloat32 converts little-endian data of dtype dt into dst;
// len(b) == len(dst)·dt.Size().
func decodeFloat32(dst []float32, b []byte, dt DType) {
	switch dt {
	case F32:
		if dtype.LittleEndianHost() { // the format is little-endian too
			copy(dtype.Bytes(dst), b)
			return
		}
		decodeFloat32Naive(dst, b, dt)
	case F16:
		for i := range dst {
			dst[i] = dtype.Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = dtype.BFloat16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	default:
		decodeFloat32Naive(dst, b, dt)
	}
}

// decodeFloat32Naive is the element-by-element reference for decodeFloat32.
func decodeFloat32Naive(dst []float32, b []byte, dt DType) {
	for i := range dst {
		switch dt {
		case F32:
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		case F16:
			dst[i] = dtype.Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		case BF16:
			dst[i] = dtype.BFloat16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		case F64:
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	}
}

// Int32 returns the named tensor as a new []int32. I32 is copied; I64, U64,
// U32 are range-checked; narrower integers and BOOL are widened.
func (f *File) Int32(name string) ([]int32, error) { return readInts[int32](f, name, I32, "int32") }

// Int64 returns the named tensor as a new []int64. I64 is copied; U64 is
// range-checked; narrower integers and BOOL are widened.
func (f *File) Int64(name string) ([]int64, error) { return readInts[int64](f, name, I64, "int64") }

// readInts reads the named integer tensor as a new []T: a tensor of dtype
// same (T's own) is copied, any other is converted element by element,
// failing on the first value T cannot hold.
func readInts[T int32 | int64](f *File, name string, same DType, typeName string) ([]T, error) {
	t, b, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !isInt(t.DType) {
		return nil, f.errorf("tensor %q: dtype %s cannot be read as %s (want an integer dtype)", name, t.DType, typeName)
	}
	dst := make([]T, len(b)/t.DType.Size())
	if t.DType == same && dtype.LittleEndianHost() {
		copy(dtype.Bytes(dst), b)
		return dst, nil
	}
	for i := range dst {
		v, ok := intAt(b, i, t.DType)
		if !ok || int64(T(v)) != v {
			return nil, f.errorf("tensor %q: element %d (%s) does not fit in %s", name, i, formatInt(b, i, t.DType), typeName)
		}
		dst[i] = T(v)
	}
	return dst, nil
}

func isInt(d DType) bool {
	switch d {
	case I64, I32, I16, I8, U64, U32, U16, U8, BOOL:
		return true
	}
	return false
}

// intAt returns element i of integer data b of dtype d; false when a U64
// value exceeds math.MaxInt64.
func intAt(b []byte, i int, d DType) (int64, bool) {
	switch d {
	case I64:
		return int64(binary.LittleEndian.Uint64(b[8*i:])), true
	case U64:
		u := binary.LittleEndian.Uint64(b[8*i:])
		return int64(u), u <= math.MaxInt64
	case I32:
		return int64(int32(binary.LittleEndian.Uint32(b[4*i:]))), true
	case U32:
		return int64(binary.LittleEndian.Uint32(b[4*i:])), true
	case I16:
		return int64(int16(binary.LittleEndian.Uint16(b[2*i:]))), true
	case U16:
		return int64(binary.LittleEndian.Uint16(b[2*i:])), true
	case I8:
		return int64(int8(b[i])), true
	case U8, BOOL:
		return int64(b[i]), true
	}
	return 0, false
}

func formatInt(b []byte, i int, d DType) string {
	if d == U64 {
		return strconv.FormatUint(binary.LittleEndian.Uint64(b[8*i:]), 10)
	}
	v, _ := intAt(b, i, d)
	return strconv.FormatInt(v, 10)
}

// Float32Bytes appends the little-endian encoding of src to dst and returns
// the extended slice, as the F32 data of a tensor.
func Float32Bytes(dst []byte, src []float32) []byte {
	dst = slices.Grow(dst, 4*len(src))
	if dtype.LittleEndianHost() {
		return append(dst, dtype.Bytes(src)...)
	}
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// IntBytes appends the little-endian encoding of src to dst and returns
// the extended slice, as the I32 or I64 data of a tensor.
func IntBytes[T int32 | int64](dst []byte, src []T) []byte {
	var zero T
	size := int(unsafe.Sizeof(zero))
	dst = slices.Grow(dst, size*len(src))
	for _, v := range src {
		if size == 4 {
			dst = binary.LittleEndian.AppendUint32(dst, uint32(v))
		} else {
			dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
		}
	}
	return dst
}
