package safetensors

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dtype"
)

// Writer streams a safetensors file to a temporary file next to its
// destination; Close renames it into place. Data are written tensor after
// tensor in the declared order, through any mix of Write, WriteFloat32,
// WriteInt32 and WriteInt64 calls, each of which may cover part of a tensor
// or run on into the next. The first error sticks: every later call returns
// it and Close removes the temporary file. A Writer is not safe for
// concurrent use.
type Writer struct {
	path    string
	tmp     *os.File
	bw      *bufio.Writer
	tensors []TensorInfo // declared order, offsets filled in
	total   int64        // data bytes declared
	pos     int64        // data bytes written
	cur     int          // first tensor with End > pos; len(tensors) at the end
	scratch []byte
	err     error // sticky
	done    bool  // Close or Abort called

	// Everything written to tmp also goes through hash, so that Sum needs
	// no second read of a file that may be hundreds of megabytes.
	hash      hash.Hash
	headerLen int64
	size      int64  // set by a successful Close
	sha256    string // set by a successful Close
}

// Create starts writing a safetensors file at path holding the given
// tensors, in that order; only their Name, DType and Shape are used, and
// offsets are computed. metadata (may be nil) becomes the __metadata__
// entry. Nothing appears at path until Close succeeds; call Abort (a no-op
// after Close) to give up.
func Create(path string, tensors []TensorInfo, metadata map[string]string) (*Writer, error) {
	laid, total, err := layout(tensors)
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	header, err := encodeHeader(laid, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	tmp, err := atomicfile.CreateTemp(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	h := sha256.New()
	w := &Writer{path: path, tmp: tmp, bw: bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20), tensors: laid, total: total,
		hash: h, headerLen: int64(len(header))}
	if _, err := w.bw.Write(header); err != nil {
		w.fail(err)
		return nil, errors.Join(w.err, w.Abort())
	}
	w.advance(0)
	return w, nil
}

// layout validates the declared tensors and assigns consecutive offsets.
func layout(tensors []TensorInfo) ([]TensorInfo, int64, error) {
	out := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var pos int64
	for i, t := range tensors {
		switch {
		case t.Name == "":
			return nil, 0, fmt.Errorf("tensor %d has an empty name", i)
		case t.Name == metadataKey:
			return nil, 0, fmt.Errorf("tensor name %q is reserved", t.Name)
		case !utf8.ValidString(t.Name):
			return nil, 0, fmt.Errorf("tensor name %q is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return nil, 0, fmt.Errorf("tensor %q is declared twice", t.Name)
		case t.DType.Size() == 0:
			return nil, 0, fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		seen[t.Name] = true
		for _, d := range t.Shape {
			if d < 0 {
				return nil, 0, fmt.Errorf("tensor %q: shape %v has a negative dimension", t.Name, t.Shape)
			}
		}
		n, ok := dtype.CheckedProduct(int64(t.DType.Size()), t.Shape)
		if !ok || n > math.MaxInt64-pos {
			return nil, 0, fmt.Errorf("tensor %q: shape %v × %s overflows the file size", t.Name, t.Shape, t.DType)
		}
		out[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape), Begin: pos, End: pos + n}
		pos += n
	}
	return out, pos, nil
}

// encodeHeader returns the 8-byte length and the JSON header, padded with
// spaces to a multiple of 8 bytes: __metadata__ first (keys sorted), then
// the tensors in the given order.
func encodeHeader(tensors []TensorInfo, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.Write(make([]byte, 8))
	b.WriteByte('{')
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q: %q is not valid UTF-8", k, v)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSONString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	for i, t := range tensors {
		if i > 0 || metadata != nil {
			b.WriteByte(',')
		}
		writeJSONString(&b, t.Name)
		fmt.Fprintf(&b, `:{"dtype":%q,"shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, d)
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, t.Begin, t.End)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	out := b.Bytes()
	if n := len(out) - 8; n > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the limit of %d", n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(out, uint64(len(out)-8))
	return out, nil
}

// writeJSONString writes s as a JSON string, leaving <, > and & unescaped.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a valid UTF-8 string always encodes; writes to a Buffer never fail
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// fail records the first error, naming the destination.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("safetensors: write %s: %w", w.path, err)
	}
	return w.err
}

func (w *Writer) usable() error {
	if w.done {
		return fmt.Errorf("safetensors: write %s: writer is closed", w.path)
	}
	return w.err
}

// advance records n more data bytes and moves cur past finished (and empty)
// tensors.
func (w *Writer) advance(n int) {
	w.pos += int64(n)
	for w.cur < len(w.tensors) && w.tensors[w.cur].End <= w.pos {
		w.cur++
	}
}

// Write writes raw little-endian data bytes, continuing through the tensors
// in declared order. Writing past the declared total is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if rem := w.total - w.pos; int64(len(p)) > rem {
		return 0, w.fail(fmt.Errorf("%d bytes written past the end of the declared data (%d bytes)", int64(len(p))-rem, w.total))
	}
	n, err := w.bw.Write(p)
	w.advance(n)
	if err != nil {
		return n, w.fail(err)
	}
	return n, nil
}

// chunkElems bounds the scratch buffer used to encode values.
const chunkElems = 1 << 14

// next returns the tensor the next value goes to and how many values fit in
// it, checking that the position is on an element boundary and the dtype is
// one of want.
func (w *Writer) next(what string, want ...DType) (TensorInfo, int, error) {
	if w.cur == len(w.tensors) {
		return TensorInfo{}, 0, w.fail(fmt.Errorf("%s: more values than the declared tensors hold", what))
	}
	t := w.tensors[w.cur]
	if !slices.Contains(want, t.DType) {
		return TensorInfo{}, 0, w.fail(fmt.Errorf("%s: tensor %q has dtype %s, want one of %v", what, t.Name, t.DType, want))
	}
	size := int64(t.DType.Size())
	if (w.pos-t.Begin)%size != 0 {
		return TensorInfo{}, 0, w.fail(fmt.Errorf("%s: tensor %q: position %d is inside an element", what, t.Name, w.pos-t.Begin))
	}
	return t, int(min((t.End-w.pos)/size, chunkElems)), nil
}

// flushScratch writes w.scratch.
func (w *Writer) flushScratch() error {
	n, err := w.bw.Write(w.scratch)
	w.advance(n)
	if err != nil {
		return w.fail(err)
	}
	return nil
}

// writeValues writes v through the tensors in chunks; enc appends the
// encoding of chunk c in the dtype of tensor t, or fails on a value t
// cannot hold. what names the calling method in errors.
func writeValues[T any](w *Writer, what string, v []T, want []DType, enc func(b []byte, t TensorInfo, c []T) ([]byte, error)) error {
	if err := w.usable(); err != nil {
		return err
	}
	for len(v) > 0 {
		t, k, err := w.next(what, want...)
		if err != nil {
			return err
		}
		k = min(k, len(v))
		if w.scratch, err = enc(w.scratch[:0], t, v[:k]); err != nil {
			return w.fail(err)
		}
		v = v[k:]
		if err := w.flushScratch(); err != nil {
			return err
		}
	}
	return nil
}

// WriteFloat32 writes values encoded in the dtype of the tensor they fall
// into: F32 as is, F16 and BF16 rounded to nearest even, F64 widened.
func (w *Writer) WriteFloat32(v []float32) error {
	return writeValues(w, "WriteFloat32", v, []DType{F32, F16, BF16, F64}, func(b []byte, t TensorInfo, c []float32) ([]byte, error) {
		switch t.DType {
		case F32:
			b = Float32Bytes(b, c)
		case F16:
			for _, x := range c {
				b = binary.LittleEndian.AppendUint16(b, dtype.Float32ToFloat16(x))
			}
		case BF16:
			for _, x := range c {
				b = binary.LittleEndian.AppendUint16(b, dtype.Float32ToBFloat16(x))
			}
		case F64:
			for _, x := range c {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x)))
			}
		}
		return b, nil
	})
}

// WriteInt32 writes values into I32 tensors, or widened into I64 tensors.
func (w *Writer) WriteInt32(v []int32) error {
	return writeValues(w, "WriteInt32", v, []DType{I32, I64}, func(b []byte, t TensorInfo, c []int32) ([]byte, error) {
		for _, x := range c {
			if t.DType == I32 {
				b = binary.LittleEndian.AppendUint32(b, uint32(x))
			} else {
				b = binary.LittleEndian.AppendUint64(b, uint64(int64(x)))
			}
		}
		return b, nil
	})
}

// WriteInt64 writes values into I64 tensors, or into I32 tensors when every
// value fits.
func (w *Writer) WriteInt64(v []int64) error {
	return writeValues(w, "WriteInt64", v, []DType{I64, I32}, func(b []byte, t TensorInfo, c []int64) ([]byte, error) {
		for i, x := range c {
			if t.DType == I64 {
				b = binary.LittleEndian.AppendUint64(b, uint64(x))
				continue
			}
			if x < math.MinInt32 || x > math.MaxInt32 {
				el := (w.pos-t.Begin)/4 + int64(i)
				return b, fmt.Errorf("WriteInt64: tensor %q: element %d = %d does not fit in I32", t.Name, el, x)
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(x))
		}
		return b, nil
	})
}

// Close checks that exactly the declared bytes were written, then flushes,
// fsyncs and renames the temporary file to the destination. On any error
// the temporary file is removed and the destination is left as it was.
func (w *Writer) Close() error {
	if w.done {
		return fmt.Errorf("safetensors: close %s: writer is already closed", w.path)
	}
	if w.err == nil && w.pos != w.total {
		msg := fmt.Sprintf("wrote %d of %d data bytes", w.pos, w.total)
		if w.cur < len(w.tensors) {
			msg += fmt.Sprintf("; tensor %q is incomplete", w.tensors[w.cur].Name)
		}
		w.fail(errors.New(msg))
	}
	if w.err != nil {
		return errors.Join(w.err, w.Abort())
	}
	if err := w.bw.Flush(); err != nil {
		return errors.Join(fmt.Errorf("safetensors: close %s: %w", w.path, err), w.Abort())
	}
	w.done = true
	if err := atomicfile.Commit(w.tmp, w.path); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", w.path, err)
	}
	w.size = w.headerLen + w.total
	w.sha256 = hex.EncodeToString(w.hash.Sum(nil))
	return nil
}

// Sum returns the size and the hex SHA-256 of the file as written: the Size
// and SHA256 that provenance.Hash would report after reading it back. They
// are valid only after Close returned nil; until then Sum returns 0 and "".
func (w *Writer) Sum() (size int64, sha256hex string) {
	return w.size, w.sha256
}

// Abort discards the file being written: it closes and removes the
// temporary file. It is a no-op after Close or a previous Abort, so it can
// be deferred.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	name := w.tmp.Name()
	cerr := w.tmp.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("safetensors: abort %s: %w", w.path, err)
	}
	_ = cerr // the file is gone; a close error on it no longer matters
	return nil
}

// Tensor is a tensor held in memory, for WriteFile. Data is little-endian,
// C-ordered, len(Data) = prod(Shape)·DType.Size().
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// WriteFile writes tensors, in order, and metadata to a new safetensors file
// at path, atomically.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	w, err := Create(path, infos, metadata)
	if err != nil {
		return err
	}
	for i, t := range tensors {
		if n := w.tensors[i].End - w.tensors[i].Begin; int64(len(t.Data)) != n {
			err := fmt.Errorf("safetensors: write %s: tensor %q: %d data bytes, shape %v × %s needs %d",
				path, t.Name, len(t.Data), t.Shape, t.DType, n)
			return errors.Join(err, w.Abort())
		}
		if _, err := w.Write(t.Data); err != nil {
			return errors.Join(err, w.Abort())
		}
	}
	return w.Close()
}
