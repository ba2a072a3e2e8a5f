package pyutf8

import (
	"strings"
	"unicode/utf8"
)

// String returns s with each maximal ill-formed subsequence replaced by
// U+FFFD, and how many it replaced: the "best practice" of Unicode §3.9
// (Table 3-7) that Python's bytes.decode("utf-8", errors="replace") and
// Rust's from_utf8_lossy follow. "\xe2\x82" (a cut "€") becomes one U+FFFD,
// "\xed\xa0\x80" (a surrogate) three. Valid input is returned as is, without
// copying. Go's own conversions differ: []rune(s) gives one U+FFFD per byte,
// and strings.ToValidUTF8 one per run.
func String(s string) (string, int) {
	if utf8.ValidString(s) {
		return s, 0
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	n := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 { // size 3: a literal U+FFFD
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
		n++
	}
	return b.String(), n
}

// Bytes is String for a byte slice.
func Bytes(p []byte) (string, int) {
	if utf8.Valid(p) {
		return string(p), 0
	}
	return String(string(p))
}

// maximalSubpart returns the length (1 to 3) of the longest prefix of s,
// which starts with an ill-formed sequence, that is a prefix of some
// well-formed one (at least 1).
func maximalSubpart(s string) int {
	n, lo, hi := 0, byte(0x80), byte(0xBF) // sequence length; bounds of the second byte
	switch c := s[0]; {
	case 0xC2 <= c && c <= 0xDF:
		n = 2
	case c == 0xE0:
		n, lo = 3, 0xA0
	case 0xE1 <= c && c <= 0xEC, c == 0xEE, c == 0xEF:
		n = 3
	case c == 0xED:
		n, hi = 3, 0x9F
	case c == 0xF0:
		n, lo = 4, 0x90
	case 0xF1 <= c && c <= 0xF3:
		n = 4
	case c == 0xF4:
		n, hi = 4, 0x8F
	default:
		return 1
	}
	k := 1
	for ; k < n && k < len(s); k++ {
		if c := s[k]; c < lo || c > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return k
}
