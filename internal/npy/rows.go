package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
)

// rowHeaderLen is the room RowWriter keeps for its header, which it writes
// last, when the row count is known: a version 1.0 header of 128 bytes has
// room for any 2-D int shape (the dict is under 80 bytes).
const rowHeaderLen = 128

// RowWriter streams a 2-D integer array of rows of a fixed length to a
// .npy file in constant memory, for when the row count is not known in
// advance. The file appears under its name only at Close.
type RowWriter struct {
	path  string
	descr string // "<i4" or "<i8"
	cols  int
	rows  int
	tmp   *os.File
	bw    *bufio.Writer
	buf   []byte
}

// CreateRows starts a .npy of rows of cols int32 values (int64 when wide
// is set).
func CreateRows(path string, cols int, wide bool) (*RowWriter, error) {
	if cols <= 0 {
		return nil, fmt.Errorf("npy: write %s: %d columns", path, cols)
	}
	tmp, err := atomicfile.CreateTemp(path)
	if err != nil {
		return nil, fmt.Errorf("npy: write %s: %w", path, err)
	}
	w := &RowWriter{path: path, descr: "<i4", cols: cols, tmp: tmp, bw: bufio.NewWriterSize(tmp, 1<<20)}
	if wide {
		w.descr = "<i8"
	}
	if _, err := w.bw.Write(make([]byte, rowHeaderLen)); err != nil {
		w.Abort()
		return nil, fmt.Errorf("npy: write %s: %w", path, err)
	}
	return w, nil
}

// Append writes one row of cols values.
func (w *RowWriter) Append(row []int32) error {
	if len(row) != w.cols {
		panic(fmt.Sprintf("npy: row of %d values, want %d", len(row), w.cols))
	}
	w.buf = w.buf[:0]
	if w.descr == "<i8" {
		for _, v := range row {
			w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(int64(v)))
		}
	} else {
		for _, v := range row {
			w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(v))
		}
	}
	if _, err := w.bw.Write(w.buf); err != nil {
		return fmt.Errorf("npy: write %s: %w", w.path, err)
	}
	w.rows++
	return nil
}

// Rows returns how many rows were appended.
func (w *RowWriter) Rows() int { return w.rows }

// Close writes the header, syncs and renames the file into place.
func (w *RowWriter) Close() error {
	header, err := encodeHeader(w.descr, false, []int{w.rows, w.cols})
	if err == nil && len(header) > rowHeaderLen {
		err = fmt.Errorf("header of %d bytes does not fit the %d reserved", len(header), rowHeaderLen)
	}
	if err == nil {
		// Pad the dict with spaces before its newline to the reserved length.
		pad := rowHeaderLen - len(header)
		header = append(header[:len(header)-1], append(bytes.Repeat([]byte{' '}, pad), '\n')...)
		binary.LittleEndian.PutUint16(header[8:10], uint16(rowHeaderLen-10))
		err = w.bw.Flush()
	}
	if err == nil {
		_, err = w.tmp.WriteAt(header, 0)
	}
	if err != nil {
		w.Abort()
		return fmt.Errorf("npy: write %s: %w", w.path, err)
	}
	if err := atomicfile.Commit(w.tmp, w.path); err != nil {
		return fmt.Errorf("npy: write %s: %w", w.path, err)
	}
	return nil
}

// Abort removes the unfinished file.
func (w *RowWriter) Abort() {
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}
