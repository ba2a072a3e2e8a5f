package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// magic starts every .npy file.
const magic = "\x93NUMPY"

// MaxHeaderLen bounds the header length accepted by ParseHeader. numpy
// itself refuses headers over 10,000 bytes by default (np.load's
// max_header_size); this limit only guards against absurd allocations.
const MaxHeaderLen = 1 << 20

// arrayAlign is numpy's ARRAY_ALIGN: data start at a multiple of 64 bytes.
const arrayAlign = 64

// growthAxisMaxDigits is numpy's GROWTH_AXIS_MAX_DIGITS (numpy ≥ 1.24): the
// header keeps room for the growth axis to reach 21 digits.
const growthAxisMaxDigits = 21

// Header is the parsed header of a .npy file.
type Header struct {
	Descr        string // dtype string, e.g. "<i8"
	FortranOrder bool
	Shape        []int // () for a scalar
	DataOffset   int64 // offset of the first data byte from the start of the file
}

// NumElements returns the product of the shape (1 for a scalar). ParseHeader
// guarantees it does not overflow.
func (h Header) NumElements() int {
	n := 1
	for _, d := range h.Shape {
		n *= d
	}
	return n
}

// ParseHeader reads the magic, version, header length and header from r,
// leaving r at the first data byte, and validates them.
func ParseHeader(r io.Reader) (Header, error) {
	h, err := parseHeader(r)
	if err != nil {
		return Header{}, fmt.Errorf("npy: %w", err)
	}
	return h, nil
}

func parseHeader(r io.Reader) (Header, error) {
	var pre [8]byte
	if n, err := io.ReadFull(r, pre[:]); err != nil {
		if n == 0 && err == io.EOF {
			return Header{}, errors.New("empty file, not a .npy file")
		}
		return Header{}, readErr("preamble", err)
	}
	if string(pre[:6]) != magic {
		return Header{}, fmt.Errorf("not a .npy file (starts with %q, want %q)", pre[:6], magic)
	}
	major, minor := pre[6], pre[7]
	var hlen, offset int64
	switch {
	case major == 1 && minor == 0:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, readErr("header length", err)
		}
		hlen, offset = int64(binary.LittleEndian.Uint16(b[:])), 10
	case (major == 2 || major == 3) && minor == 0:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, readErr("header length", err)
		}
		hlen, offset = int64(binary.LittleEndian.Uint32(b[:])), 12
	default:
		return Header{}, fmt.Errorf("unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if hlen > MaxHeaderLen {
		return Header{}, fmt.Errorf("header length %d exceeds the limit of %d bytes", hlen, MaxHeaderLen)
	}
	buf := make([]byte, hlen)
	if n, err := io.ReadFull(r, buf); err != nil {
		return Header{}, fmt.Errorf("truncated header: want %d bytes, got %d", hlen, n)
	}
	if major == 3 && !utf8.Valid(buf) {
		return Header{}, errors.New("version 3.0 header is not valid UTF-8")
	}
	h, err := parseDict(buf)
	if err != nil {
		return Header{}, fmt.Errorf("header %s: %w", abbrev(buf), err)
	}
	h.DataOffset = offset + hlen
	return h, nil
}

func readErr(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated %s", what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// abbrev quotes at most the first 80 bytes of a header for error messages.
func abbrev(b []byte) string {
	s := strings.TrimRight(string(b), " \n")
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}

// parser reads the Python dict literal of a header.
type parser struct {
	s []byte
	i int
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *parser) peek() byte {
	p.skipSpace()
	if p.i == len(p.s) {
		return 0
	}
	return p.s[p.i]
}

func (p *parser) expect(c byte) error {
	if got := p.peek(); got != c {
		return fmt.Errorf("expected %q at byte %d, found %s", c, p.i, p.found())
	}
	p.i++
	return nil
}

// found describes the input at the current position.
func (p *parser) found() string {
	if p.i >= len(p.s) {
		return "end of header"
	}
	return strconv.QuoteRune(rune(p.s[p.i]))
}

// str parses a quoted Python string literal (no prefixes; the escapes \\,
// \', \" only, which is all a dtype string can need).
func (p *parser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", fmt.Errorf("expected a string at byte %d, found %s", p.i, p.found())
	}
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == q:
			return b.String(), nil
		case c == '\n':
			return "", errors.New("newline inside a string")
		case c == '\\':
			if p.i == len(p.s) {
				return "", errors.New("unterminated string")
			}
			e := p.s[p.i]
			p.i++
			if e != '\\' && e != '\'' && e != '"' {
				return "", fmt.Errorf("unsupported escape \\%c in a string", e)
			}
			b.WriteByte(e)
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated string")
}

// word parses an identifier-like token (True, False).
func (p *parser) word() string {
	p.skipSpace()
	j := p.i
	for p.i < len(p.s) && (p.s[p.i] == '_' || 'a' <= p.s[p.i]|0x20 && p.s[p.i]|0x20 <= 'z' || '0' <= p.s[p.i] && p.s[p.i] <= '9') {
		p.i++
	}
	return string(p.s[j:p.i])
}

// dim parses a non-negative Python int literal, allowing the L suffix of
// headers written by Python 2.
func (p *parser) dim() (int, error) {
	p.skipSpace()
	if p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] == '+') {
		neg := p.s[p.i] == '-'
		p.i++
		if neg {
			return 0, errors.New("negative dimension in shape")
		}
	}
	j := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	if j == p.i {
		return 0, fmt.Errorf("expected a dimension at byte %d, found %s", p.i, p.found())
	}
	n, err := strconv.ParseInt(string(p.s[j:p.i]), 10, 0)
	if err != nil {
		return 0, fmt.Errorf("dimension %s is too large", p.s[j:p.i])
	}
	if p.i < len(p.s) && (p.s[p.i] == 'L' || p.s[p.i] == 'l') {
		p.i++
	}
	return int(n), nil
}

// shape parses a tuple of dimensions: (), (5,) or (6, 16) (a trailing
// comma is allowed after two or more).
func (p *parser) shape() ([]int, error) {
	if c := p.peek(); c != '(' {
		if c == '[' {
			return nil, errors.New("shape is a list, want a tuple")
		}
		return nil, fmt.Errorf("shape: expected '(' at byte %d, found %s", p.i, p.found())
	}
	p.i++
	shape := []int{}
	for {
		if p.peek() == ')' {
			p.i++
			if len(shape) == 1 {
				// (5) is the int 5 in Python, which numpy rejects.
				return nil, fmt.Errorf("shape (%d) is not a tuple (a 1-tuple needs a trailing comma)", shape[0])
			}
			return shape, nil
		}
		d, err := p.dim()
		if err != nil {
			return nil, err
		}
		shape = append(shape, d)
		switch p.peek() {
		case ',':
			p.i++
			if len(shape) == 1 && p.peek() == ')' {
				p.i++
				return shape, nil
			}
		case ')':
		default:
			return nil, fmt.Errorf("shape: expected ',' or ')' at byte %d, found %s", p.i, p.found())
		}
	}
}

// parseDict parses the header dict; it needs exactly the keys descr,
// fortran_order and shape, as numpy does.
func parseDict(s []byte) (Header, error) {
	p := &parser{s: s}
	var h Header
	seen := map[string]bool{}
	if err := p.expect('{'); err != nil {
		return h, err
	}
	for p.peek() != '}' {
		key, err := p.str()
		if err != nil {
			return h, fmt.Errorf("key: %w", err)
		}
		if seen[key] {
			return h, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if err := p.expect(':'); err != nil {
			return h, err
		}
		switch key {
		case "descr":
			if c := p.peek(); c == '[' {
				return h, errors.New("descr is a list: structured dtypes are not supported")
			}
			if h.Descr, err = p.str(); err != nil {
				return h, fmt.Errorf("descr: %w", err)
			}
		case "fortran_order":
			switch w := p.word(); w {
			case "True":
				h.FortranOrder = true
			case "False":
				h.FortranOrder = false
			case "":
				return h, fmt.Errorf("fortran_order: expected True or False at byte %d, found %s", p.i, p.found())
			default:
				return h, fmt.Errorf("fortran_order is %s, want True or False", w)
			}
		case "shape":
			if h.Shape, err = p.shape(); err != nil {
				return h, err
			}
		default:
			return h, fmt.Errorf("unexpected key %q", key)
		}
		if c := p.peek(); c == ',' {
			p.i++
		} else if c != '}' {
			return h, fmt.Errorf("expected ',' or '}' at byte %d, found %s", p.i, p.found())
		}
	}
	p.i++ // '}'
	if p.skipSpace(); p.i != len(p.s) {
		return h, fmt.Errorf("unexpected %s after the dict at byte %d", p.found(), p.i)
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("missing key %q", k)
		}
	}
	if _, ok := numElements(h.Shape); !ok {
		return h, fmt.Errorf("shape %s has too many elements", formatShape(h.Shape))
	}
	return h, nil
}

// numElements returns prod(shape), or false if it exceeds math.MaxInt64.
func numElements(shape []int) (int64, bool) {
	return dtype.CheckedProduct(1, shape)
}

// formatShape writes a shape as Python's repr of a tuple: (), (5,), (6, 16).
func formatShape(shape []int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

// encodeHeader returns the preamble and header numpy's np.save (≥ 1.24)
// writes for an array with this descr, order and shape (numpy/lib/format.py
// _write_array_header and _wrap_header). descr must not need escaping.
func encodeHeader(descr string, fortran bool, shape []int) ([]byte, error) {
	order := "False"
	if fortran {
		order = "True"
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, formatShape(shape))
	if len(shape) > 0 {
		axis := shape[0]
		if fortran {
			axis = shape[len(shape)-1]
		}
		dict += strings.Repeat(" ", max(0, growthAxisMaxDigits-len(strconv.Itoa(axis))))
	}
	for _, v := range []struct {
		major   byte
		lenSize int
		maxLen  int64
	}{{1, 2, math.MaxUint16}, {2, 4, math.MaxUint32}} {
		pre := len(magic) + 2 + v.lenSize
		hlen := len(dict) + 1 // the final newline
		// numpy pads by ARRAY_ALIGN - x%ARRAY_ALIGN, a whole 64 when x is aligned.
		pad := arrayAlign - (pre+hlen)%arrayAlign
		if int64(hlen)+int64(pad) > v.maxLen {
			continue
		}
		out := make([]byte, 0, pre+hlen+pad)
		out = append(out, magic...)
		out = append(out, v.major, 0)
		if v.lenSize == 2 {
			out = binary.LittleEndian.AppendUint16(out, uint16(hlen+pad))
		} else {
			out = binary.LittleEndian.AppendUint32(out, uint32(hlen+pad))
		}
		out = append(out, dict...)
		out = append(out, strings.Repeat(" ", pad)...)
		return append(out, '\n'), nil
	}
	return nil, fmt.Errorf("header for shape of %d dimensions exceeds 4 GiB", len(shape))
}
