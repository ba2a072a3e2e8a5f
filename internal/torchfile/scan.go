package torchfile

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Limits of the opcode pre-pass. Real torch pickles stay far below them.
const (
	// maxMarkDepth bounds MARKs open at once; gopickle keeps one saved stack
	// per open MARK, and torch state dicts nest about five deep.
	maxMarkDepth = 4096
	// maxLongBytes bounds LONG4 payloads: gopickle decodes them in time
	// quadratic in their length.
	maxLongBytes = 1024
	// maxIntDigits bounds the text INT and LONG opcodes; it is Python's own
	// default limit on int↔str conversion (sys.get_int_max_str_digits()).
	maxIntDigits = 4300
)

// scanPickle walks one pickle at the start of data opcode by opcode, as
// Python's pickletools.genops does, and returns its length up to and
// including STOP. It rejects what gopickle would mishandle before gopickle
// sees the bytes: length fields beyond the remaining input (gopickle
// allocates them up front), unknown and unsupported opcodes, references to
// memo slots never written, stack underflow, unbalanced MARKs, dicts with an
// odd number of items and zero-length longs (gopickle panics on both).
func scanPickle(data []byte) (int, error) {
	s := scanner{data: data, memo: make(map[int]struct{})}
	return s.run()
}

type scanner struct {
	data  []byte
	pos   int
	depth int   // items on the stack above the innermost MARK
	marks []int // saved depths, one per open MARK
	memo  map[int]struct{}
	op    byte
	start int // offset of the current opcode
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("pickle: offset %d: opcode %s: %s", s.start, opName(s.op), fmt.Sprintf(format, args...))
}

func (s *scanner) take(n uint64) ([]byte, error) {
	if n > uint64(len(s.data)-s.pos) {
		return nil, s.errorf("needs %d bytes, %d remain", n, len(s.data)-s.pos)
	}
	b := s.data[s.pos : s.pos+int(n)]
	s.pos += int(n)
	return b, nil
}

func (s *scanner) line() ([]byte, error) {
	for i := s.pos; i < len(s.data); i++ {
		if s.data[i] == '\n' {
			b := s.data[s.pos:i]
			s.pos = i + 1
			return b, nil
		}
	}
	return nil, s.errorf("argument line has no newline before the end of the data")
}

func (s *scanner) need(n int) error {
	if s.depth < n {
		return s.errorf("needs %d stack items above the mark, has %d", n, s.depth)
	}
	return nil
}

func (s *scanner) push() { s.depth++ }

func (s *scanner) popMark() (int, error) {
	if len(s.marks) == 0 {
		return 0, s.errorf("no MARK to pop")
	}
	n := s.depth
	s.depth = s.marks[len(s.marks)-1]
	s.marks = s.marks[:len(s.marks)-1]
	return n, nil
}

// lenPrefixed reads a little-endian length of size bytes and then that many
// bytes of payload.
func (s *scanner) lenPrefixed(size int, signed bool) (int, error) {
	b, err := s.take(uint64(size))
	if err != nil {
		return 0, err
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[0])
	case 4:
		u := binary.LittleEndian.Uint32(b)
		if signed && int32(u) < 0 {
			return 0, s.errorf("negative length %d", int32(u))
		}
		n = uint64(u)
	case 8:
		n = binary.LittleEndian.Uint64(b)
	}
	if _, err := s.take(n); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (s *scanner) memoGet(i int) error {
	if _, ok := s.memo[i]; !ok {
		return s.errorf("memo slot %d was never written", i)
	}
	s.push()
	return nil
}

func (s *scanner) memoPut(i int) error {
	if err := s.need(1); err != nil {
		return err
	}
	if i < 0 {
		return s.errorf("negative memo slot %d", i)
	}
	s.memo[i] = struct{}{}
	return nil
}

// memoIndex reads the memo slot argument of a GET or PUT opcode: a decimal
// line (GET, PUT), one byte (BINGET, BINPUT) or four little-endian bytes
// (LONG_BINGET, LONG_BINPUT).
func (s *scanner) memoIndex(op byte) (int, error) {
	switch op {
	case 'g', 'p':
		return s.lineInt()
	case 'h', 'q':
		b, err := s.take(1)
		if err != nil {
			return 0, err
		}
		return int(b[0]), nil
	default:
		b, err := s.take(4)
		if err != nil {
			return 0, err
		}
		return int(binary.LittleEndian.Uint32(b)), nil
	}
}

func (s *scanner) lineInt() (int, error) {
	b, err := s.line()
	if err != nil {
		return 0, err
	}
	if len(b) > 20 {
		return 0, s.errorf("memo index line of %d bytes", len(b))
	}
	i, err := strconv.Atoi(string(b))
	if err != nil {
		return 0, s.errorf("bad memo index %q", b)
	}
	return i, nil
}

func (s *scanner) run() (int, error) {
	for {
		if s.pos >= len(s.data) {
			s.start, s.op = s.pos, 0
			return 0, fmt.Errorf("pickle: offset %d: data ends before STOP", s.pos)
		}
		s.start = s.pos
		s.op = s.data[s.pos]
		s.pos++
		if err := s.step(); err != nil {
			if err == errStop {
				return s.pos, nil
			}
			return 0, err
		}
	}
}

var errStop = fmt.Errorf("stop")

func (s *scanner) step() error {
	switch op := s.op; op {
	case '(': // MARK
		if len(s.marks) >= maxMarkDepth {
			return s.errorf("more than %d nested MARKs", maxMarkDepth)
		}
		s.marks = append(s.marks, s.depth)
		s.depth = 0
	case '.': // STOP
		if err := s.need(1); err != nil {
			return err
		}
		return errStop
	case '0': // POP: gopickle, like Python, pops a MARK when the stack is empty
		if s.depth == 0 {
			_, err := s.popMark()
			return err
		}
		s.depth--
	case '1': // POP_MARK
		_, err := s.popMark()
		return err
	case '2': // DUP
		if err := s.need(1); err != nil {
			return err
		}
		s.push()
	case 'F', 'S', 'V', 'P': // FLOAT, STRING, UNICODE, PERSID: text line
		if _, err := s.line(); err != nil {
			return err
		}
		s.push()
	case 'I', 'L': // INT, LONG: decimal text
		b, err := s.line()
		if err != nil {
			return err
		}
		if len(b) > maxIntDigits {
			return s.errorf("%d-digit integer exceeds the %d-digit limit", len(b), maxIntDigits)
		}
		s.push()
	case 'K': // BININT1
		if _, err := s.take(1); err != nil {
			return err
		}
		s.push()
	case 'M': // BININT2
		if _, err := s.take(2); err != nil {
			return err
		}
		s.push()
	case 'J': // BININT
		if _, err := s.take(4); err != nil {
			return err
		}
		s.push()
	case 'G': // BINFLOAT
		if _, err := s.take(8); err != nil {
			return err
		}
		s.push()
	case 'N', 0x88, 0x89, '}', ']', ')', 0x8f: // NONE, NEWTRUE, NEWFALSE, EMPTY_DICT/LIST/TUPLE/SET
		s.push()
	case 'U', 'C', 0x8c: // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE
		if _, err := s.lenPrefixed(1, false); err != nil {
			return err
		}
		s.push()
	case 'T': // BINSTRING: signed 4-byte length
		if _, err := s.lenPrefixed(4, true); err != nil {
			return err
		}
		s.push()
	case 'X', 'B': // BINUNICODE, BINBYTES: unsigned 4-byte length
		if _, err := s.lenPrefixed(4, false); err != nil {
			return err
		}
		s.push()
	case 0x8d, 0x8e, 0x96: // BINUNICODE8, BINBYTES8, BYTEARRAY8
		if _, err := s.lenPrefixed(8, false); err != nil {
			return err
		}
		s.push()
	case 0x8a: // LONG1
		n, err := s.lenPrefixed(1, false)
		if err != nil {
			return err
		}
		if n == 0 {
			return s.errorf("zero-length long is not supported")
		}
		s.push()
	case 0x8b: // LONG4
		b, err := s.take(4)
		if err != nil {
			return err
		}
		n := int32(binary.LittleEndian.Uint32(b))
		switch {
		case n <= 0:
			return s.errorf("long length %d is not positive", n)
		case n > maxLongBytes:
			return s.errorf("long of %d bytes exceeds the %d-byte limit", n, maxLongBytes)
		}
		if _, err := s.take(uint64(n)); err != nil {
			return err
		}
		s.push()
	case 'Q', 0x85: // BINPERSID, TUPLE1: replace the top item
		return s.need(1)
	case 'R', 0x81, 0x93, 'a', 0x86, 'b': // REDUCE, NEWOBJ, STACK_GLOBAL, APPEND, TUPLE2, BUILD
		if err := s.need(2); err != nil {
			return err
		}
		s.depth--
	case 0x87, 0x92, 's': // TUPLE3, NEWOBJ_EX, SETITEM
		if err := s.need(3); err != nil {
			return err
		}
		s.depth -= 2
	case 'c': // GLOBAL: module and name lines
		for range 2 {
			if _, err := s.line(); err != nil {
				return err
			}
		}
		s.push()
	case 'i': // INST: module and name lines, arguments above a MARK
		for range 2 {
			if _, err := s.line(); err != nil {
				return err
			}
		}
		if _, err := s.popMark(); err != nil {
			return err
		}
		s.push()
	case 'o': // OBJ: class and arguments above a MARK
		n, err := s.popMark()
		if err != nil {
			return err
		}
		if n == 0 {
			return s.errorf("no class above the MARK")
		}
		s.push()
	case 'd': // DICT
		n, err := s.popMark()
		if err != nil {
			return err
		}
		if n%2 != 0 {
			return s.errorf("odd number of items (%d) for key/value pairs", n)
		}
		s.push()
	case 'l', 't', 0x91: // LIST, TUPLE, FROZENSET
		if _, err := s.popMark(); err != nil {
			return err
		}
		s.push()
	case 'e', 0x90: // APPENDS, ADDITEMS: items above a MARK, container below it
		if _, err := s.popMark(); err != nil {
			return err
		}
		return s.need(1)
	case 'u': // SETITEMS
		n, err := s.popMark()
		if err != nil {
			return err
		}
		if n%2 != 0 {
			return s.errorf("odd number of items (%d) for key/value pairs", n)
		}
		return s.need(1)
	case 'g', 'h', 'j': // GET, BINGET, LONG_BINGET
		i, err := s.memoIndex(op)
		if err != nil {
			return err
		}
		return s.memoGet(i)
	case 'p', 'q', 'r': // PUT, BINPUT, LONG_BINPUT
		i, err := s.memoIndex(op)
		if err != nil {
			return err
		}
		return s.memoPut(i)
	case 0x94: // MEMOIZE: gopickle, like Python, uses the memo's size as slot
		return s.memoPut(len(s.memo))
	case 0x80: // PROTO
		b, err := s.take(1)
		if err != nil {
			return err
		}
		if b[0] > 5 {
			return s.errorf("unsupported protocol %d", b[0])
		}
	case 0x95: // FRAME: a length hint; its contents are ordinary opcodes
		b, err := s.take(8)
		if err != nil {
			return err
		}
		if n := binary.LittleEndian.Uint64(b); n > uint64(len(s.data)-s.pos) {
			return s.errorf("frame of %d bytes, %d remain", n, len(s.data)-s.pos)
		}
	case 0x98: // READONLY_BUFFER: no effect on a loaded value
		return s.need(1)
	case 0x82, 0x83, 0x84, 0x97: // EXT1/2/4, NEXT_BUFFER
		return s.errorf("not supported")
	default:
		return s.errorf("unknown opcode")
	}
	return nil
}

func opName(op byte) string {
	if name, ok := opNames[op]; ok {
		return name
	}
	return fmt.Sprintf("0x%02x", op)
}

var opNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT",
	'I': "INT", 'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE",
	'P': "PERSID", 'Q': "BINPERSID", 'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING",
	'U': "SHORT_BINSTRING", 'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND", 'b': "BUILD",
	'c': "GLOBAL", 'd': "DICT", '}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET",
	'i': "INST", 'j': "LONG_BINGET", 'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT",
	'q': "BINPUT", 'r': "LONG_BINPUT", 's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE",
	'u': "SETITEMS", 'G': "BINFLOAT", 'B': "BINBYTES", 'C': "SHORT_BINBYTES",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1",
	0x8b: "LONG4", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8",
	0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
	0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8",
	0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}
