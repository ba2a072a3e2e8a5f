package owt

import (
	"strings"
	"unicode"

	"github.com/ctxdep/ctxdep/internal/pyutf8"
)

// pyIsSpace reports whether Python's str.isspace holds for r: Go's
// unicode.IsSpace plus the information separators U+001C–U+001F (checked
// against Python 3.11 over all code points by the text golden test).
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// normalizeDoc applies the Skylion007/openwebtext loading script's text
// clean-up to a raw document: UTF-8 decoding (invalid bytes
// replaced as Python's errors="replace" would; the script itself decodes
// strictly and would fail), re.sub("\n\n\n+", "\n\n", text), then
// str.strip(). It returns the text and the number of replacements.
func normalizeDoc(b []byte) (string, int) {
	s, bad := pyutf8.Bytes(b)
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
