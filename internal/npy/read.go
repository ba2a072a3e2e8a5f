package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// elemType is a parsed descr: kind 'i', 'u', 'f' or 'b' and the size in
// bytes.
type elemType struct {
	kind byte
	size int
}

// parseDescr parses a simple numeric descr such as '<i8' or '|u1'.
func parseDescr(descr string) (elemType, error) {
	if len(descr) < 3 {
		return elemType{}, fmt.Errorf("unsupported dtype %q", descr)
	}
	order, kind := descr[0], descr[1]
	size, err := strconv.Atoi(descr[2:])
	if err != nil || !validSize(kind, size) {
		return elemType{}, fmt.Errorf("unsupported dtype %q", descr)
	}
	switch {
	case order == '>' && size > 1:
		return elemType{}, fmt.Errorf("big-endian dtype %q is not supported (re-save with arr.astype(arr.dtype.newbyteorder('<')))", descr)
	case order == '=' && size > 1:
		return elemType{}, fmt.Errorf("dtype %q has native byte order, which a file cannot pin down (want '<')", descr)
	case order == '|' && size > 1:
		return elemType{}, fmt.Errorf("dtype %q: byte order '|' is only valid for 1-byte types", descr)
	case order != '<' && order != '>' && order != '=' && order != '|':
		return elemType{}, fmt.Errorf("unsupported dtype %q", descr)
	}
	return elemType{kind, size}, nil
}

func validSize(kind byte, size int) bool {
	switch kind {
	case 'i', 'u':
		return size == 1 || size == 2 || size == 4 || size == 8
	case 'f':
		return size == 2 || size == 4 || size == 8
	case 'b':
		return size == 1
	}
	return false
}

// array is an open .npy file positioned at its data.
type array struct {
	path string
	f    *os.File
	r    *bufio.Reader
	h    Header
	et   elemType
	n    int // elements
}

// openArray opens path, parses and checks its header, and checks that the
// data length matches the shape, before anything is allocated.
func openArray(path string, accept func(elemType) bool, want string) (*array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	a, err := checkArray(path, f, accept, want)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("npy: %s: %w", path, err)
	}
	return a, nil
}

func checkArray(path string, f *os.File, accept func(elemType) bool, want string) (*array, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		// The data length check below needs a file size.
		return nil, errors.New("not a regular file")
	}
	r := bufio.NewReaderSize(f, 1<<16)
	h, err := parseHeader(r)
	if err != nil {
		return nil, err
	}
	et, err := parseDescr(h.Descr)
	if err != nil {
		return nil, fmt.Errorf("%w; want %s", err, want)
	}
	if !accept(et) {
		return nil, fmt.Errorf("dtype %q is not supported here; want %s", h.Descr, want)
	}
	if h.FortranOrder {
		return nil, errors.New("fortran_order is True; only C-order arrays are supported (re-save with np.ascontiguousarray)")
	}
	need, ok := dtype.CheckedProduct(int64(et.size), h.Shape)
	if !ok {
		return nil, fmt.Errorf("shape %s of %s overflows", formatShape(h.Shape), h.Descr)
	}
	have := fi.Size() - h.DataOffset
	if have < need {
		return nil, fmt.Errorf("truncated: shape %s of %s needs %d data bytes, file has %d", formatShape(h.Shape), h.Descr, need, max(have, 0))
	}
	if have > need {
		return nil, fmt.Errorf("shape %s of %s needs %d data bytes, file has %d", formatShape(h.Shape), h.Descr, need, have)
	}
	if need/int64(et.size) > math.MaxInt {
		return nil, fmt.Errorf("shape %s is too large for this platform", formatShape(h.Shape))
	}
	return &array{path: path, f: f, r: r, h: h, et: et, n: int(need / int64(et.size))}, nil
}

// readChunks reads the data in chunks of whole elements and passes each
// chunk with the index of its first element to decode.
func (a *array) readChunks(decode func(first int, b []byte) error) error {
	const chunk = 1 << 16 // a multiple of every element size
	buf := make([]byte, min(chunk, a.n*a.et.size))
	for i := 0; i < a.n; {
		k := min(a.n-i, chunk/a.et.size)
		b := buf[:k*a.et.size]
		if _, err := io.ReadFull(a.r, b); err != nil {
			return a.dataErr(err)
		}
		if err := decode(i, b); err != nil {
			return err
		}
		i += k
	}
	return nil
}

func (a *array) dataErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("npy: %s: file shrank while being read", a.path)
	}
	return fmt.Errorf("npy: read %s: %w", a.path, err)
}

// intAt returns element i of little-endian integer data b of type et;
// false for a '<u8' value above math.MaxInt64.
func intAt(b []byte, i int, et elemType) (int64, bool) {
	switch {
	case et.kind == 'i' && et.size == 8:
		return int64(binary.LittleEndian.Uint64(b[8*i:])), true
	case et.kind == 'u' && et.size == 8:
		u := binary.LittleEndian.Uint64(b[8*i:])
		return int64(u), u <= math.MaxInt64
	case et.kind == 'i' && et.size == 4:
		return int64(int32(binary.LittleEndian.Uint32(b[4*i:]))), true
	case et.kind == 'u' && et.size == 4:
		return int64(binary.LittleEndian.Uint32(b[4*i:])), true
	case et.kind == 'i' && et.size == 2:
		return int64(int16(binary.LittleEndian.Uint16(b[2*i:]))), true
	case et.kind == 'u' && et.size == 2:
		return int64(binary.LittleEndian.Uint16(b[2*i:])), true
	case et.kind == 'i':
		return int64(int8(b[i])), true
	default: // 'u' or 'b', 1 byte
		return int64(b[i]), true
	}
}

func formatElem(b []byte, i int, et elemType) string {
	if et.kind == 'u' && et.size == 8 {
		return strconv.FormatUint(binary.LittleEndian.Uint64(b[8*i:]), 10)
	}
	v, _ := intAt(b, i, et)
	return strconv.FormatInt(v, 10)
}

// ReadInt32 reads an integer array: '<i4' as is; '<i8', '<u4' and '<u8'
// range-checked to int32; '<i2', '<u2', '|i1', '|u1' and '|b1' widened. It
// returns the data in C order and the shape.
func ReadInt32(path string) (data []int32, shape []int, err error) {
	a, err := openArray(path, func(et elemType) bool { return et.kind != 'f' },
		"an integer dtype ('<i4', '<i8', '<i2', '<u2', '<u4', '|u1', …)")
	if err != nil {
		return nil, nil, err
	}
	defer a.f.Close()
	data = make([]int32, a.n)
	// On a little-endian host '<i4' data is read straight into the result.
	if a.et.kind == 'i' && a.et.size == 4 && dtype.LittleEndianHost() {
		if _, err := io.ReadFull(a.r, dtype.Bytes(data)); err != nil {
			return nil, nil, a.dataErr(err)
		}
		return data, a.h.Shape, nil
	}
	err = a.readChunks(func(first int, b []byte) error {
		for i := range len(b) / a.et.size {
			v, ok := intAt(b, i, a.et)
			if !ok || v < math.MinInt32 || v > math.MaxInt32 {
				return fmt.Errorf("npy: %s: element %d (%s) does not fit in int32", path, first+i, formatElem(b, i, a.et))
			}
			data[first+i] = int32(v)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return data, a.h.Shape, nil
}

// ReadFloat32 reads a float array: '<f4' as is, '<f2' widened exactly,
// '<f8' rounded to nearest. It returns the data in C order and the shape.
func ReadFloat32(path string) ([]float32, []int, error) {
	a, err := openArray(path, func(et elemType) bool { return et.kind == 'f' }, "'<f4', '<f2' or '<f8'")
	if err != nil {
		return nil, nil, err
	}
	defer a.f.Close()
	data := make([]float32, a.n)
	if a.et.size == 4 && dtype.LittleEndianHost() {
		if _, err := io.ReadFull(a.r, dtype.Bytes(data)); err != nil {
			return nil, nil, a.dataErr(err)
		}
		return data, a.h.Shape, nil
	}
	err = a.readChunks(func(first int, b []byte) error {
		dst := data[first : first+len(b)/a.et.size]
		switch a.et.size {
		case 2:
			for i := range dst {
				dst[i] = dtype.Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		case 4:
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case 8:
			for i := range dst {
				dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return data, a.h.Shape, nil
}
