package bpe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the naive reference of the fast encoder: OpenAI's encoder.py
// written out plainly. The pre-tokenizer is hand-written from Pattern's
// semantics (alternatives tried left to right at each position, as the
// backtracking regex engines of Python and HF do), and BPE merges the
// lowest-ranked adjacent *pair* of merges.txt, all occurrences at once,
// instead of ranking merged byte strings one at a time. Tests and fuzz tests
// compare it with Encode.

// naiveEncoder holds the pair ranks of merges.txt (as byte strings) and
// the vocabulary.
type naiveEncoder struct {
	pairRank map[[2]string]int
	ids      map[string]int
}

func newNaiveEncoder(t *Tokenizer, merges [][2]string) *naiveEncoder {
	n := &naiveEncoder{pairRank: make(map[[2]string]int, len(merges)), ids: t.ranks}
	for i, m := range merges {
		n.pairRank[m] = i
	}
	return n
}

// encode is Encode without the fast path.
func (n *naiveEncoder) encode(text string) []int32 {
	var ids []int32
	for i, seg := range strings.Split(ToValidUTF8(text), EOTText) {
		if i > 0 {
			ids = append(ids, EOT)
		}
		for _, piece := range pretokenize(seg) {
			for _, tok := range n.bpe(piece) {
				ids = append(ids, int32(n.ids[tok]))
			}
		}
	}
	return ids
}

// bpe is encoder.py's bpe() on the bytes of one piece.
func (n *naiveEncoder) bpe(piece string) []string {
	word := make([]string, len(piece))
	for i := 0; i < len(piece); i++ { // bytes, not runes
		word[i] = piece[i : i+1]
	}
	for len(word) > 1 {
		best, bestRank := [2]string{}, -1
		for i := 0; i+1 < len(word); i++ {
			if r, ok := n.pairRank[[2]string{word[i], word[i+1]}]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = [2]string{word[i], word[i+1]}, r
			}
		}
		if bestRank < 0 {
			break
		}
		var next []string
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == best[0] && word[i+1] == best[1] {
				next = append(next, best[0]+best[1])
				i += 2
			} else {
				next = append(next, word[i])
				i++
			}
		}
		word = next
	}
	return word
}

// pretokenize splits valid UTF-8 text into the matches of Pattern:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// \s is Unicode White_Space (unicode.IsSpace: the same set in .NET/regexp2,
// Python's regex module and Oniguruma), \p{L} letters, \p{N} numbers.
func pretokenize(s string) []string {
	r := []rune(s)
	var out []string
	for i := 0; i < len(r); {
		n := matchAt(r, i)
		out = append(out, string(r[i:i+n]))
		i += n
	}
	return out
}

// matchAt returns the length of Pattern's match at r[i:] (always ≥ 1: every
// rune is a letter, number, space or other).
func matchAt(r []rune, i int) int {
	rest := r[i:]
	for _, c := range contractions {
		if hasRunePrefix(rest, c) {
			return len(c)
		}
	}
	run := func(start int, class func(rune) bool) int {
		j := start
		for j < len(r) && class(r[j]) {
			j++
		}
		return j - i
	}
	for _, class := range []func(rune) bool{isLetter, isNumber, isOther} {
		if class(r[i]) {
			return run(i, class)
		}
		if r[i] == ' ' && i+1 < len(r) && class(r[i+1]) {
			return run(i+1, class)
		}
	}
	// r[i] is whitespace.
	end := i
	for end < len(r) && unicode.IsSpace(r[end]) {
		end++
	}
	if end == len(r) {
		return end - i // \s+(?!\S) at the end of the text
	}
	if end-1 > i {
		return end - 1 - i // \s+(?!\S): the run minus the space before \S
	}
	return end - i // \s+
}

var contractions = [][]rune{[]rune("'s"), []rune("'t"), []rune("'re"), []rune("'ve"), []rune("'m"), []rune("'ll"), []rune("'d")}

func hasRunePrefix(r, p []rune) bool {
	if len(r) < len(p) {
		return false
	}
	for k := range p {
		if r[k] != p[k] {
			return false
		}
	}
	return true
}

func isLetter(c rune) bool { return unicode.IsLetter(c) }
func isNumber(c rune) bool { return unicode.IsNumber(c) }
func isOther(c rune) bool  { return !unicode.IsSpace(c) && !unicode.IsLetter(c) && !unicode.IsNumber(c) }

// deriveMerges recovers merges.txt from GPT-2's ranks (as
// transformers' TikTokenConverter does): the token of rank r ≥ 256 is the
// merge r−256, and its pair is what rank-BPE below r leaves of its bytes.
func deriveMerges(ranks map[string]int) ([][2]string, error) {
	byID := make([]string, len(ranks))
	for s, id := range ranks {
		if id < 0 || id >= len(byID) {
			return nil, fmt.Errorf("id %d out of range", id)
		}
		byID[id] = s
	}
	var merges [][2]string
	for id := 256; id < len(byID); id++ {
		parts := rankSplit(ranks, []byte(byID[id]), id)
		if len(parts) != 2 {
			return nil, fmt.Errorf("token %d %q splits into %d parts below its rank", id, byID[id], len(parts))
		}
		merges = append(merges, [2]string{string(parts[0]), string(parts[1])})
	}
	return merges, nil
}

// toValidUTF8Naive is ToValidUTF8 by brute force: at an invalid position
// it tries every prefix length k = 3, 2, 1 and every continuation, and
// replaces the longest prefix that some well-formed sequence extends.
func toValidUTF8Naive(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size != 1 {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		k := 1
		for try := 3; try > 1; try-- {
			if i+try <= len(s) && extendsToValid(s[i:i+try]) {
				k = try
				break
			}
		}
		b.WriteRune(utf8.RuneError)
		i += k
	}
	return b.String()
}

// extendsToValid reports whether some bytes appended to p make exactly
// one well-formed UTF-8 sequence.
func extendsToValid(p string) bool {
	for n := len(p) + 1; n <= 4; n++ {
		var try func(q string) bool
		try = func(q string) bool {
			if len(q) == n {
				r, size := utf8.DecodeRuneInString(q)
				return size == n && r != utf8.RuneError
			}
			for c := 0x80; c <= 0xBF; c++ {
				if try(q + string([]byte{byte(c)})) {
					return true
				}
			}
			return false
		}
		if try(p) {
			return true
		}
	}
	return false
}
