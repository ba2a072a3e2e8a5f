package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// Reader is a safetensors file opened for reading tensors on demand: Open
// reads and checks the header only, and each read copies one tensor (or a
// part of it) from the file into the caller's memory with positioned
// reads. Unlike a File it maps nothing, so a tensor costs one copy from the
// page cache, and tensors never read are never touched. Its methods are
// safe for concurrent use until Close.
type Reader struct {
	path    string
	fh      *os.File
	dataOff int64 // file offset of the data section
	header
}

// OpenReader opens the file at path and parses and validates its header as
// Parse does (against the file's size). Errors name the path.
func OpenReader(path string) (*Reader, error) {
	fh, size, err := statRegular(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := openReader(fh, int64(size))
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	r.path = path
	return r, nil
}

func openReader(fh *os.File, size int64) (*Reader, error) {
	if size < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", size)
	}
	var nb [8]byte
	if _, err := fh.ReadAt(nb[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if err := checkHeaderLen(n, size); err != nil {
		return nil, err
	}
	raw := make([]byte, n)
	if _, err := fh.ReadAt(raw, 8); err != nil {
		return nil, err
	}
	h, err := parseHeader(raw, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	return &Reader{fh: fh, dataOff: 8 + int64(n), header: h}, nil
}

// Path returns the path the file was opened from.
func (r *Reader) Path() string { return r.path }

// Close closes the file. Closing twice is harmless.
func (r *Reader) Close() error {
	if r.fh == nil {
		return nil
	}
	err := r.fh.Close()
	r.fh = nil
	if err != nil {
		return fmt.Errorf("safetensors: close %s: %w", r.path, err)
	}
	return nil
}

func (r *Reader) errorf(format string, args ...any) error {
	return fmt.Errorf("safetensors: %s: "+format, append([]any{r.path}, args...)...)
}

// ReadFloat32 reads the named tensor into dst, whose length must equal the
// tensor's number of elements, converting as File.Float32 does. F32 data
// are read straight into dst.
func (r *Reader) ReadFloat32(dst []float32, name string) error {
	t, ok := r.Tensor(name)
	if !ok {
		return r.errorf("no tensor %q", name)
	}
	if n := t.NumElements(); len(dst) != n {
		return r.errorf("tensor %q: destination holds %d values, tensor has %d (shape %v)", name, len(dst), n, t.Shape)
	}
	return r.ReadFloat32At(dst, name, 0)
}

// ReadFloat32At reads elements [start, start+len(dst)) of the named tensor,
// in C order, into dst: a part of a large tensor, so that a caller can work
// on one part while the next is read.
func (r *Reader) ReadFloat32At(dst []float32, name string, start int) error {
	if r.fh == nil {
		return r.errorf("tensor %q: file is closed", name)
	}
	i, ok := r.index[name]
	if !ok {
		return r.errorf("no tensor %q", name)
	}
	t := r.tensors[i]
	if err := checkFloatType(t); err != nil {
		return r.errorf("%v", err)
	}
	size := t.DType.Size()
	if n := t.NumElements(); start < 0 || start > n || len(dst) > n-start {
		return r.errorf("tensor %q: elements [%d, %d) are outside its %d (shape %v)", name, start, start+len(dst), n, t.Shape)
	}
	off := r.dataOff + t.Begin + int64(start)*int64(size)
	if t.DType == F32 && dtype.LittleEndianHost() {
		return r.readAt(dtype.Bytes(dst), off, name)
	}
	// Convert through a bounded buffer.
	const chunk = 1 << 16
	buf := make([]byte, min(len(dst), chunk)*size)
	for lo := 0; lo < len(dst); lo += chunk {
		hi := min(lo+chunk, len(dst))
		b := buf[:(hi-lo)*size]
		if err := r.readAt(b, off+int64(lo)*int64(size), name); err != nil {
			return err
		}
		decodeFloat32(dst[lo:hi], b, t.DType)
	}
	return nil
}

func (r *Reader) readAt(b []byte, off int64, name string) error {
	if _, err := r.fh.ReadAt(b, off); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file shrank since it was opened
		}
		return r.errorf("tensor %q: %w", name, err)
	}
	return nil
}

// checkFloatType is checkFloat without a File: nil for the dtypes read as
// float32.
func checkFloatType(t TensorInfo) error {
	switch t.DType {
	case F32, F16, BF16, F64:
		return nil
	}
	return fmt.Errorf("tensor %q: dtype %s cannot be read as float32 (want F32, F16, BF16 or F64)", t.Name, t.DType)
}
