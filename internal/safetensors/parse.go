package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes; it is the
// limit of the reference implementation (safetensors' MAX_HEADER_SIZE).
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header entry holding string→string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a file. Begin and End are byte offsets
// relative to the start of the data section, End exclusive.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	Begin int64
	End   int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file. Its methods are safe for concurrent use
// until Close.
type File struct {
	path string
	buf  []byte // whole file; nil after Close
	data []byte // data section, a sub-slice of buf
	header
	release func() error // unmaps the file, if it is mapped
}

// Parse parses and validates a whole safetensors file held in buf. The File
// keeps views into buf, which must not change while the File is in use.
func Parse(buf []byte) (*File, error) {
	f, err := parse(buf)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return f, nil
}

// checkHeaderLen checks a header length n read from the first 8 bytes of
// a file of size bytes.
func checkHeaderLen(n uint64, size int64) error {
	if n > MaxHeaderSize {
		return fmt.Errorf("header length %d exceeds the limit of %d bytes (not a safetensors file?)", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return fmt.Errorf("header length %d exceeds the %d bytes that follow it (truncated, or not a safetensors file)", n, size-8)
	}
	return nil
}

// parse does the work of Parse; its errors carry no package prefix so that
// Open can name the file.
func parse(buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if err := checkHeaderLen(n, int64(len(buf))); err != nil {
		return nil, err
	}
	data := buf[8+n:]
	h, err := parseHeader(buf[8:8+n], int64(len(data)))
	if err != nil {
		return nil, err
	}
	return &File{buf: buf, data: data, header: h}, nil
}

// header is a parsed and validated header: the tensors sorted by offset,
// tiling a data section of the given length.
type header struct {
	tensors  []TensorInfo
	index    map[string]int // name → position in tensors
	metadata map[string]string
}

// parseHeader parses the JSON header of a file whose data section holds
// dataLen bytes and checks the tensors' layout against it.
func parseHeader(raw []byte, dataLen int64) (header, error) {
	entries, err := splitHeader(raw)
	if err != nil {
		return header{}, err
	}
	h := header{index: make(map[string]int, len(entries))}
	for _, e := range entries {
		if e.name == metadataKey {
			if h.metadata, err = parseMetadata(e.raw); err != nil {
				return header{}, err
			}
			continue
		}
		t, err := parseTensor(e.name, e.raw, dataLen)
		if err != nil {
			return header{}, fmt.Errorf("tensor %q: %w", e.name, err)
		}
		h.tensors = append(h.tensors, t)
	}
	if err := checkLayout(h.tensors, dataLen); err != nil {
		return header{}, err
	}
	for i, t := range h.tensors {
		h.index[t.Name] = i
	}
	return h, nil
}

type headerEntry struct {
	name string
	raw  json.RawMessage
}

// splitHeader splits the header object into its entries, in file order,
// rejecting duplicate names (which encoding/json would silently merge).
func splitHeader(header []byte) ([]headerEntry, error) {
	if !utf8.Valid(header) {
		return nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("header: %w", jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("header is not a JSON object (starts with %s)", describeToken(tok))
	}
	var entries []headerEntry
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("header: %w", jsonErr(err))
		}
		name, ok := tok.(string)
		if !ok { // cannot happen: encoding/json only yields string keys
			return nil, fmt.Errorf("header: object key is %s, not a string", describeToken(tok))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("header: entry %q: %w", name, jsonErr(err))
		}
		if seen[name] {
			return nil, fmt.Errorf("header: duplicate entry %q", name)
		}
		seen[name] = true
		entries = append(entries, headerEntry{name, raw})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("header: %w", jsonErr(err))
	}
	// Only whitespace may follow the object (writers pad with spaces).
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("header: after the object: %w", jsonErr(err))
		}
		return nil, fmt.Errorf("header: unexpected %s after the object", describeToken(tok))
	}
	return entries, nil
}

// jsonErr turns a premature end of the header into a readable error.
func jsonErr(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return err
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%v", v)
	}
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s must be an object mapping strings to strings", metadataKey)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return nil, fmt.Errorf("%s: value of %q is %s, not a string", metadataKey, k, abbrev(v))
		}
		out[k] = s
	}
	return out, nil
}

func abbrev(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "…"
	}
	return string(raw)
}

// parseTensor decodes and checks one header entry against a data section of
// dataLen bytes.
func parseTensor(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return TensorInfo{}, fmt.Errorf("entry is %s, not an object", abbrev(raw))
	}
	var (
		dt      string
		shape   []int64
		offsets []int64
	)
	for _, f := range []struct {
		key string
		dst any
	}{{"dtype", &dt}, {"shape", &shape}, {"data_offsets", &offsets}} {
		v, ok := fields[f.key]
		if !ok {
			return TensorInfo{}, fmt.Errorf("missing %q", f.key)
		}
		if string(v) == "null" {
			return TensorInfo{}, fmt.Errorf("%q is null", f.key)
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return TensorInfo{}, fmt.Errorf("bad %q %s: %w", f.key, abbrev(v), err)
		}
	}
	t := TensorInfo{Name: name, DType: DType(dt), Shape: make([]int, len(shape))}
	size := t.DType.Size()
	if size == 0 {
		return TensorInfo{}, fmt.Errorf("unknown dtype %q", dt)
	}
	for i, d := range shape {
		if d < 0 || d > math.MaxInt {
			return TensorInfo{}, fmt.Errorf("shape %v has an invalid dimension %d", shape, d)
		}
		t.Shape[i] = int(d)
	}
	if len(offsets) != 2 {
		return TensorInfo{}, fmt.Errorf("data_offsets %v must hold two numbers", offsets)
	}
	t.Begin, t.End = offsets[0], offsets[1]
	if t.Begin < 0 || t.End < t.Begin {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d, %d] are not an interval", t.Begin, t.End)
	}
	if t.End > dataLen {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d, %d] run past the %d-byte data section", t.Begin, t.End, dataLen)
	}
	nbytes, ok := dtype.CheckedProduct(int64(size), t.Shape)
	if !ok {
		return TensorInfo{}, fmt.Errorf("shape %v × %s overflows", t.Shape, t.DType)
	}
	if nbytes != t.End-t.Begin {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d, %d] do not match shape %v × %s (%d bytes)",
			t.Begin, t.End, t.Shape, t.DType, nbytes)
	}
	return t, nil
}

// checkLayout sorts tensors by offset and checks that they tile the data
// section: each starts where the previous one ended, and the last ends at
// the end of the data.
func checkLayout(ts []TensorInfo, dataLen int64) error {
	slices.SortFunc(ts, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), strings.Compare(a.Name, b.Name))
	})
	var pos int64
	prev := ""
	for _, t := range ts {
		switch {
		case t.Begin < pos:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d", t.Name, t.Begin, t.End, prev, pos)
		case t.Begin > pos:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] leave bytes [%d, %d) of the data section unused", t.Name, t.Begin, t.End, pos, t.Begin)
		}
		pos, prev = t.End, t.Name
	}
	if pos != dataLen {
		return fmt.Errorf("data section is %d bytes but the tensors cover only %d", dataLen, pos)
	}
	return nil
}

// Close releases the file's memory mapping, if any. Views returned by Raw
// must not be used afterwards. Closing twice is harmless.
func (f *File) Close() error {
	if f.buf == nil {
		return nil
	}
	f.buf, f.data = nil, nil
	if f.release != nil {
		err := f.release()
		f.release = nil
		if err != nil {
			return fmt.Errorf("safetensors: close %s: %w", f.path, err)
		}
	}
	return nil
}

// Path returns the path the file was opened from ("" for Parse).
func (f *File) Path() string { return f.path }

// Tensors returns the tensors of the file sorted by Begin (ties by End,
// then name). The result is a copy the caller may modify.
func (h *header) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(h.tensors))
	for i, t := range h.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor returns the description of the named tensor.
func (h *header) Tensor(name string) (TensorInfo, bool) {
	i, ok := h.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := h.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// Metadata returns a copy of the file's __metadata__ (empty if absent).
func (h *header) Metadata() map[string]string {
	out := make(map[string]string, len(h.metadata))
	for k, v := range h.metadata {
		out[k] = v
	}
	return out
}

// errorf formats an error about the file, prefixed with the package and, for
// opened files, the path.
func (f *File) errorf(format string, args ...any) error {
	if f.path != "" {
		return fmt.Errorf("safetensors: %s: "+format, append([]any{f.path}, args...)...)
	}
	return fmt.Errorf("safetensors: "+format, args...)
}

// lookup finds a tensor and its bytes.
func (f *File) lookup(name string) (TensorInfo, []byte, error) {
	if f.buf == nil {
		return TensorInfo{}, nil, f.errorf("tensor %q: file is closed", name)
	}
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, nil, f.errorf("no tensor %q", name)
	}
	t := f.tensors[i]
	return t, f.data[t.Begin:t.End:t.End], nil
}

// Raw returns the bytes of the named tensor: a view into the file, valid
// until Close, that must not be modified.
func (f *File) Raw(name string) ([]byte, error) {
	_, b, err := f.lookup(name)
	return b, err
}
