package npy

import (
	"fmt"
	"io"
	"math"
	"os"
)

// rowFileChunk bounds the bytes RowFile reads at once, so that reading any
// number of rows needs at most this much scratch memory besides dst.
const rowFileChunk = 1 << 20

// RowFile reads row ranges of a 2-D integer .npy ([rows, cols], C order)
// by offset, without loading the file: token files larger than memory are
// read piece by piece. It accepts the integer dtypes ReadInt32 accepts and
// converts them the same way (range-checked to int32). A RowFile is not
// safe for concurrent use.
type RowFile struct {
	path       string
	f          *os.File
	et         elemType
	rows, cols int
	offset     int64 // of the first data byte
	buf        []byte
}

// OpenRows opens path and checks its header and size.
func OpenRows(path string) (*RowFile, error) {
	a, err := openArray(path, func(et elemType) bool { return et.kind != 'f' },
		"an integer dtype ('<i4', '<i8', '<i2', '<u2', '<u4', '|u1', …)")
	if err != nil {
		return nil, err
	}
	if len(a.h.Shape) != 2 || a.h.Shape[0] == 0 || a.h.Shape[1] == 0 {
		a.f.Close()
		return nil, fmt.Errorf("npy: %s: shape %s is not [rows, T] with rows, T > 0", path, formatShape(a.h.Shape))
	}
	return &RowFile{path: path, f: a.f, et: a.et, rows: a.h.Shape[0], cols: a.h.Shape[1], offset: a.h.DataOffset}, nil
}

// NumRows returns the number of rows.
func (r *RowFile) NumRows() int { return r.rows }

// RowLen returns the number of values in a row.
func (r *RowFile) RowLen() int { return r.cols }

// Read copies rows [first, first+n) into dst (n·RowLen).
func (r *RowFile) Read(dst []int32, first, n int) error {
	if first < 0 || n < 0 || first+n > r.rows || len(dst) < n*r.cols {
		panic(fmt.Sprintf("npy: read rows [%d, %d) of %d into %d values", first, first+n, r.rows, len(dst)))
	}
	size := r.et.size
	perChunk := max(rowFileChunk/size, 1)
	if r.buf == nil {
		r.buf = make([]byte, min(perChunk, r.rows*r.cols)*size)
	}
	start := first * r.cols // first element
	total := n * r.cols
	for done := 0; done < total; {
		k := min(total-done, perChunk)
		b := r.buf[:k*size]
		if _, err := r.f.ReadAt(b, r.offset+int64(start+done)*int64(size)); err != nil {
			if err == io.EOF {
				return fmt.Errorf("npy: %s: file shrank while being read", r.path)
			}
			return fmt.Errorf("npy: read %s: %w", r.path, err)
		}
		out := dst[done : done+k]
		for i := range out {
			v, ok := intAt(b, i, r.et)
			if !ok || v < math.MinInt32 || v > math.MaxInt32 {
				e := start + done + i
				return fmt.Errorf("npy: %s: element [%d, %d] (%s) does not fit in int32", r.path, e/r.cols, e%r.cols, formatElem(b, i, r.et))
			}
			out[i] = int32(v)
		}
		done += k
	}
	return nil
}

// Close closes the file.
func (r *RowFile) Close() error { return r.f.Close() }
