package owt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/pyutf8"
)

// jsonSource reads the "text" field of JSON lines, or of one JSON array of
// objects, from a possibly compressed file.
type jsonSource struct {
	fileStream
	kind    string // compression, "" for none
	br      *bufio.Reader
	maxDoc  int // bytes in one line or document
	stats   *Stats
	line    int    // 1-based number of the last line read (lines mode)
	buf     []byte // the current line (reused)
	dec     *json.Decoder
	elem    int // 1-based number of the last array element (array mode)
	started bool
}

// newJSONSource reads JSON documents from r; name is for messages.
func newJSONSource(name string, r io.Reader, maxDoc int, st *Stats) (*jsonSource, error) {
	r, release, kind, err := decompressed(r)
	if err != nil {
		return nil, streamErr(name, kind, err)
	}
	return &jsonSource{fileStream: fileStream{path: name, release: release}, kind: kind, br: bufio.NewReaderSize(r, 256<<10), maxDoc: maxDoc, stats: st}, nil
}

func (s *jsonSource) next() (string, error) {
	if !s.started {
		s.started = true
		if err := s.start(); err != nil {
			return "", err
		}
	}
	if s.dec != nil {
		return s.nextElement()
	}
	for {
		line, err := s.readLine()
		if err != nil {
			return "", err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			s.stats.Skipped["blank line"]++
			continue
		}
		text, ok, err := s.decodeRecord(line)
		if err != nil {
			return "", fmt.Errorf("owt: %s: line %d: %w", s.path, s.line, err)
		}
		if ok {
			return text, nil
		}
	}
}

// start skips a UTF-8 byte order mark and switches to array mode when the
// first non-space byte is '['. In lines mode nothing else is consumed.
func (s *jsonSource) start() error {
	if b, err := s.br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		s.br.Discard(3)
	}
	head, err := s.br.Peek(4096)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return s.readErr(err)
	}
	t := bytes.TrimLeft(head, " \t\r\n")
	if len(t) == 0 || t[0] != '[' {
		return nil
	}
	s.dec = json.NewDecoder(s.br)
	if _, err := s.dec.Token(); err != nil {
		return fmt.Errorf("owt: %s: %w", s.path, noEOF(err))
	}
	return nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF, so that an error we wrap is
// never mistaken for the end of the corpus by errors.Is(err, io.EOF).
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLine returns the next line without its terminator, or io.EOF.
func (s *jsonSource) readLine() ([]byte, error) {
	s.buf = s.buf[:0]
	for {
		chunk, err := s.br.ReadSlice('\n')
		if len(s.buf)+len(chunk) > s.maxDoc+1 {
			return nil, fmt.Errorf("owt: %s: line %d is longer than %d bytes (raise the document size limit if this is a corpus)", s.path, s.line+1, s.maxDoc)
		}
		s.buf = append(s.buf, chunk...)
		switch {
		case err == nil:
			s.line++
			return bytes.TrimSuffix(s.buf[:len(s.buf)-1], []byte{'\r'}), nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if len(s.buf) == 0 {
				return nil, io.EOF
			}
			s.line++
			return s.buf, nil // last line without a newline
		default:
			return nil, s.readErr(err)
		}
	}
}

func (s *jsonSource) readErr(err error) error {
	if s.kind != "" {
		return fmt.Errorf("owt: %s: line %d: corrupt or truncated %s stream: %w", s.path, s.line+1, s.kind, noEOF(err))
	}
	return fmt.Errorf("owt: read %s: line %d: %w", s.path, s.line+1, noEOF(err))
}

// nextElement reads the next object of a JSON array.
func (s *jsonSource) nextElement() (string, error) {
	for {
		if !s.dec.More() {
			if _, err := s.dec.Token(); err != nil { // the closing ']'
				return "", fmt.Errorf("owt: %s: element %d: %w", s.path, s.elem+1, noEOF(err))
			}
			if _, err := s.dec.Token(); err != io.EOF {
				return "", fmt.Errorf("owt: %s: data after the JSON array", s.path)
			}
			return "", io.EOF
		}
		var raw json.RawMessage
		if err := s.dec.Decode(&raw); err != nil {
			return "", fmt.Errorf("owt: %s: element %d: %w", s.path, s.elem+1, noEOF(err))
		}
		s.elem++
		if len(raw) > s.maxDoc {
			return "", fmt.Errorf("owt: %s: element %d is longer than %d bytes", s.path, s.elem, s.maxDoc)
		}
		text, ok, err := s.decodeRecord(raw)
		if err != nil {
			return "", fmt.Errorf("owt: %s: element %d: %w", s.path, s.elem, err)
		}
		if ok {
			return text, nil
		}
	}
}

// decodeRecord decodes one JSON object and returns its "text"; ok is false for a
// null text, which is counted as skipped.
func (s *jsonSource) decodeRecord(b []byte) (text string, ok bool, err error) {
	if !utf8.Valid(b) {
		fixed, _ := pyutf8.Bytes(b)
		b = []byte(fixed)
		s.stats.Replaced++
	}
	text, ok, err = textField(b)
	if err == nil && !ok {
		s.stats.Skipped["null text"]++
	}
	return text, ok, err
}

// textField returns the exact-case "text" member of a JSON object (the
// last one if repeated, as Python's json does). Decoding into a map keeps
// key matching exact (struct tags match case-insensitively) and, with
// values decoded as they are scanned, checks the line's syntax only once.
func textField(b []byte) (string, bool, error) {
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return "", false, fmt.Errorf("a JSON %s, not an object", ute.Value)
		}
		return "", false, err
	}
	if obj == nil {
		return "", false, errors.New("null, not an object")
	}
	v, found := obj["text"]
	if !found {
		return "", false, fmt.Errorf("no \"text\" field (fields: %s)", fieldNames(obj))
	}
	switch v := v.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	default:
		return "", false, fmt.Errorf("\"text\" is a JSON %s, not a string", jsonKind(v))
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case float64:
		return "number"
	case []any:
		return "array"
	}
	return "object"
}

func fieldNames(obj map[string]any) string {
	var names []byte
	n := 0
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if n == 8 {
			names = append(names, ", …"...)
			break
		}
		if n > 0 {
			names = append(names, ", "...)
		}
		names = fmt.Appendf(names, "%q", k)
		n++
	}
	if n == 0 {
		return "none"
	}
	return string(names)
}
