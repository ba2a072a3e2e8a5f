package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dtype"
)

// WriteInt32 writes data, C-ordered with the given shape, as a '<i4' array.
func WriteInt32(path string, data []int32, shape []int) error {
	return writeArray(path, "<i4", data, shape, putInt32)
}

// WriteInt64 writes data, C-ordered with the given shape, as a '<i8' array.
func WriteInt64(path string, data []int64, shape []int) error {
	return writeArray(path, "<i8", data, shape, putInt64)
}

// WriteFloat32 writes data, C-ordered with the given shape, as a '<f4'
// array.
func WriteFloat32(path string, data []float32, shape []int) error {
	return writeArray(path, "<f4", data, shape, putFloat32)
}

func putInt32(b []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) }
func putInt64(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) }
func putFloat32(b []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}

// writeArray writes the header and data to a temporary file next to path,
// then fsyncs it and renames it into place.
func writeArray[T int32 | int64 | float32](path, descr string, data []T, shape []int, put func([]byte, T) []byte) error {
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("npy: write %s: shape %v has a negative dimension", path, shape)
		}
	}
	n, ok := numElements(shape)
	if !ok {
		return fmt.Errorf("npy: write %s: shape %s has too many elements", path, formatShape(shape))
	}
	if n != int64(len(data)) {
		return fmt.Errorf("npy: write %s: shape %s holds %d elements, data has %d", path, formatShape(shape), n, len(data))
	}
	header, err := encodeHeader(descr, false, shape)
	if err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	tmp, err := atomicfile.CreateTemp(path)
	if err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	if err := writeTo(tmp, header, data, put, dtype.LittleEndianHost()); err != nil {
		tmp.Close()
		if rerr := os.Remove(tmp.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	if err := atomicfile.Commit(tmp, path); err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	return nil
}

// writeTo writes header and data to f. With raw set (on little-endian
// hosts) the data's memory is written as is; otherwise each value is
// encoded by put, the reference the tests compare against.
func writeTo[T int32 | int64 | float32](f io.Writer, header []byte, data []T, put func([]byte, T) []byte, raw bool) error {
	w := bufio.NewWriterSize(f, 1<<16)
	if _, err := w.Write(header); err != nil {
		return err
	}
	if raw {
		if _, err := w.Write(dtype.Bytes(data)); err != nil {
			return err
		}
	} else {
		var buf []byte
		for len(data) > 0 {
			k := min(len(data), 1<<13)
			buf = buf[:0]
			for _, v := range data[:k] {
				buf = put(buf, v)
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
			data = data[k:]
		}
	}
	return w.Flush()
}
