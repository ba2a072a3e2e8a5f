package owt

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// decodeUTF8 returns b as a string the way Python's
// b.decode("utf-8", errors="replace") does, and how many U+FFFD it
// substituted. Each maximal ill-formed subpart (a lone or unexpected byte,
// or the valid prefix of a truncated sequence) becomes one U+FFFD; Go's own
// conversions instead replace a truncated sequence byte by byte
// (strings.ToValidUTF8 merges whole runs), so they differ from Python on
// truncated sequences.
func decodeUTF8(b []byte) (string, int) {
	if utf8.Valid(b) {
		return string(b), 0
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	n := 0
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			sb.WriteByte(c)
			i++
			continue
		}
		if r, size := utf8.DecodeRune(b[i:]); r != utf8.RuneError || size > 1 {
			sb.Write(b[i : i+size])
			i += size
			continue
		}
		sb.WriteString("\uFFFD")
		i += illFormedLen(b[i:])
		n++
	}
	return sb.String(), n
}

// illFormedLen returns the length of the maximal subpart of an ill-formed
// UTF-8 sequence at the start of p (Unicode §3.9, "U+FFFD substitution of
// maximal subparts", which CPython follows): the lead byte plus as many
// following bytes as could still start a valid sequence; 1 for a byte that
// cannot lead. p must start with an ill-formed sequence.
func illFormedLen(p []byte) int {
	var need int
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch c := p[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F // no surrogates
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F // nothing above U+10FFFF
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	k := 1
	if k < len(p) && p[k] >= lo && p[k] <= hi {
		k++
		for k <= need && k < len(p) && p[k] >= 0x80 && p[k] <= 0xBF {
			k++
		}
	}
	if k > need { // cannot happen for an ill-formed sequence
		k = need
	}
	return k
}

// pyIsSpace reports whether Python's str.isspace holds for r: Go's
// unicode.IsSpace plus the information separators U+001C–U+001F (checked
// against Python 3.11 over all code points by the text golden test).
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// normalizeDoc applies the Skylion007/openwebtext loading script's text
// clean-up (SPEC §5.1) to a raw document: UTF-8 decoding (invalid bytes
// replaced as Python's errors="replace" would; the script itself decodes
// strictly and would fail), re.sub("\n\n\n+", "\n\n", text), then
// str.strip(). It returns the text and the number of replacements.
func normalizeDoc(b []byte) (string, int) {
	s, bad := decodeUTF8(b)
	if strings.Contains(s, "\n\n\n") {
		s = collapseNewlines(s)
	}
	return strings.TrimFunc(s, pyIsSpace), bad
}

// collapseNewlines replaces every run of three or more '\n' by "\n\n".
func collapseNewlines(s string) string {
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '\n' {
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				sb.WriteString(s[i:])
				break
			}
			sb.WriteString(s[i : i+j])
			i += j
			continue
		}
		j := i
		for j < len(s) && s[j] == '\n' {
			j++
		}
		if j-i >= 3 {
			sb.WriteString("\n\n")
		} else {
			sb.WriteString(s[i:j])
		}
		i = j
	}
	return sb.String()
}
