package bpe

import "github.com/ctxdep/ctxdep/internal/pyutf8"

// ToValidUTF8 returns s with each maximal ill-formed subsequence replaced by
// U+FFFD, as Python's bytes.decode("utf-8", errors="replace") does
// ([pyutf8.String]): "\xe2\x82" (a cut "€") becomes one U+FFFD,
// "\xed\xa0\x80" (a surrogate) three. Valid input is returned as is,
// without copying.
func ToValidUTF8(s string) string {
	v, _ := pyutf8.String(s)
	return v
}
