package bpe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FromFiles reads a GPT-2 tokenizer saved by Hugging Face in dir:
// tokenizer.json if present, else vocab.json and merges.txt.
// The files must describe GPT-2's vocabulary layout, which the fast encoder
// relies on: 50,257 ids, the 256 single bytes below 256, merge i (0-based,
// after the "#version" line) making id 256+i, every merge the split that
// rank-BPE finds for its result, and "<|endoftext|>" = 50256 as the only
// special token. Errors name the file (and the line of merges.txt).
func FromFiles(dir string) (*Tokenizer, error) {
	tj := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(tj); err == nil {
		return fromTokenizerJSON(tj)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bpe: %w", err)
	}
	vj, mt := filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt")
	vdata, err := os.ReadFile(vj)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bpe: %s has neither tokenizer.json nor vocab.json (with merges.txt)", dir)
		}
		return nil, fmt.Errorf("bpe: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(vdata, &vocab); err != nil {
		return nil, fmt.Errorf("bpe: %s: %w", vj, err)
	}
	mdata, err := os.ReadFile(mt)
	if err != nil {
		return nil, fmt.Errorf("bpe: %w", err)
	}
	merges, lines, err := parseMerges(mdata)
	if err != nil {
		return nil, fmt.Errorf("bpe: %s: %w", mt, err)
	}
	t, err := fromVocabMerges(vocab, merges, vj, mt, func(i int) string {
		return fmt.Sprintf("%s: line %d", mt, lines[i])
	})
	if err != nil {
		return nil, fmt.Errorf("bpe: %w", err)
	}
	return t, nil
}

// parseMerges reads merges.txt: an optional "#version" first line, then
// one merge "a b" per line; blank lines are skipped. It returns the merges
// and their 1-based line numbers.
func parseMerges(data []byte) (merges [][2]string, lines []int, err error) {
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || (n == 0 && strings.HasPrefix(line, "#version")) {
			continue
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, nil, fmt.Errorf("line %d: %q is not a merge \"a b\"", n+1, abbrev(line))
		}
		merges = append(merges, [2]string{a, b})
		lines = append(lines, n+1)
	}
	return merges, lines, nil
}

// tokenizerJSON holds the fields of HF's tokenizer.json that matter here.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type                    string            `json:"type"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"` // "a b" (tokenizers < 0.20) or ["a", "b"]
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	} `json:"model"`
}

func fromTokenizerJSON(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bpe: %w", err)
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, fmt.Errorf("bpe: %s: %w", path, err)
	}
	fail := func(format string, args ...any) (*Tokenizer, error) {
		return nil, fmt.Errorf("bpe: %s: %s", path, fmt.Sprintf(format, args...))
	}
	if tj.Model.Type != "BPE" {
		return fail("model type %q, want \"BPE\"", tj.Model.Type)
	}
	if s := tj.Model.ContinuingSubwordPrefix; s != nil && *s != "" {
		return fail("continuing_subword_prefix %q is not GPT-2's byte-level BPE", *s)
	}
	if s := tj.Model.EndOfWordSuffix; s != nil && *s != "" {
		return fail("end_of_word_suffix %q is not GPT-2's byte-level BPE", *s)
	}
	if n := bytes.TrimSpace(tj.Normalizer); len(n) > 0 && string(n) != "null" {
		return fail("has a normalizer (%s); GPT-2 has none", abbrev(string(n)))
	}
	if err := checkPreTokenizer(tj.PreTokenizer); err != nil {
		return fail("%v", err)
	}
	for _, a := range tj.AddedTokens {
		if a.ID != EOT || a.Content != EOTText {
			return fail("added token %q (id %d): only %q = %d is supported", a.Content, a.ID, EOTText, EOT)
		}
	}
	vocab := tj.Model.Vocab
	if vocab == nil {
		return fail("no model.vocab")
	}
	if _, ok := vocab[EOTText]; !ok && len(tj.AddedTokens) == 1 {
		vocab[EOTText] = EOT
	}
	merges := make([][2]string, len(tj.Model.Merges))
	for i, raw := range tj.Model.Merges {
		var s string
		var pair []string
		if json.Unmarshal(raw, &s) == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return fail("model.merges[%d] = %q is not \"a b\"", i, abbrev(s))
			}
			pair = []string{a, b}
		} else if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			return fail("model.merges[%d] = %s is neither \"a b\" nor [\"a\", \"b\"]", i, abbrev(string(raw)))
		}
		merges[i] = [2]string{pair[0], pair[1]}
	}
	t, err := fromVocabMerges(vocab, merges, path+": model.vocab", path+": model.merges", func(i int) string {
		return fmt.Sprintf("%s: model.merges[%d]", path, i)
	})
	if err != nil {
		return nil, fmt.Errorf("bpe: %w", err)
	}
	return t, nil
}

// checkPreTokenizer accepts GPT-2's ByteLevel pre-tokenizer (alone or in a
// Sequence) with add_prefix_space false and the regex on.
func checkPreTokenizer(raw json.RawMessage) error {
	var pt struct {
		Type           string            `json:"type"`
		AddPrefixSpace bool              `json:"add_prefix_space"`
		UseRegex       *bool             `json:"use_regex"`
		PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	}
	if err := json.Unmarshal(raw, &pt); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	if pt.Type == "Sequence" && len(pt.PreTokenizers) == 1 {
		return checkPreTokenizer(pt.PreTokenizers[0])
	}
	switch {
	case pt.Type != "ByteLevel":
		return fmt.Errorf("pre_tokenizer %q, want GPT-2's \"ByteLevel\"", pt.Type)
	case pt.AddPrefixSpace:
		return fmt.Errorf("pre_tokenizer has add_prefix_space true; GPT-2's is false")
	case pt.UseRegex != nil && !*pt.UseRegex:
		return fmt.Errorf("pre_tokenizer has use_regex false; GPT-2's is true")
	}
	return nil
}

// fromVocabMerges adapts HF's vocab (byte-level strings → ids) and merges
// to the byte-string ranks tiktoken uses, checking that both encoders give
// the same ids: merge i makes id 256+i, and rank-BPE restricted to the ids
// below that splits the merged bytes exactly into the merge's two parts.
func fromVocabMerges(vocab map[string]int, merges [][2]string, vocabName, mergesName string, mergeName func(i int) string) (*Tokenizer, error) {
	if len(vocab) != vocabSize {
		return nil, fmt.Errorf("%s: %d tokens, want GPT-2's %d", vocabName, len(vocab), vocabSize)
	}
	if id, ok := vocab[EOTText]; !ok || id != EOT {
		return nil, fmt.Errorf("%s: %q must have id %d", vocabName, EOTText, EOT)
	}
	dec := byteDecoder()
	ranks := make(map[string]int, vocabSize-1)
	for s, id := range vocab {
		if s == EOTText {
			continue
		}
		b, err := unmapBytes(dec, s)
		if err != nil {
			return nil, fmt.Errorf("%s: token %q (id %d): %w", vocabName, abbrev(s), id, err)
		}
		if prev, dup := ranks[string(b)]; dup {
			return nil, fmt.Errorf("%s: ids %d and %d are the same bytes %q", vocabName, prev, id, b)
		}
		ranks[string(b)] = id
	}
	t, err := newTokenizer(ranks)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", vocabName, err)
	}
	if len(merges) != numMerges {
		return nil, fmt.Errorf("%s: %d merges, want GPT-2's %d", mergesName, len(merges), numMerges)
	}
	for i, m := range merges {
		want := 256 + i
		var parts [2][]byte
		for k, s := range m {
			if _, ok := vocab[s]; !ok {
				return nil, fmt.Errorf("%s: %q is not in the vocabulary", mergeName(i), abbrev(s))
			}
			parts[k], _ = unmapBytes(dec, s) // in vocab, so it maps
		}
		merged := string(parts[0]) + string(parts[1])
		id, ok := ranks[merged]
		if !ok {
			return nil, fmt.Errorf("%s: %q + %q is not in the vocabulary", mergeName(i), abbrev(m[0]), abbrev(m[1]))
		}
		if id != want {
			return nil, fmt.Errorf("%s: %q + %q makes id %d, want %d: GPT-2's ids follow merge order", mergeName(i), abbrev(m[0]), abbrev(m[1]), id, want)
		}
		split := rankSplit(ranks, []byte(merged), want)
		if len(split) != 2 || len(split[0]) != len(parts[0]) {
			return nil, fmt.Errorf("%s: rank-BPE splits %q as %q, not as this merge; these files are not GPT-2-like", mergeName(i), merged, split)
		}
	}
	return t, nil
}

// bytesToUnicode is GPT-2's byte → printable rune table (encoder.py): the
// bytes '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves, the other 68 to
// 256, 257, … in increasing byte order.
func bytesToUnicode() [256]rune {
	var t [256]rune
	n := 0
	for b := range 256 {
		if ('!' <= b && b <= '~') || ('¡' <= b && b <= '¬') || ('®' <= b && b <= 'ÿ') {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}

func byteDecoder() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range bytesToUnicode() {
		m[r] = byte(b)
	}
	return m
}

// unmapBytes turns a vocabulary string back into the bytes it stands for.
func unmapBytes(dec map[rune]byte, s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("empty token")
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := dec[r]
		if !ok {
			return nil, fmt.Errorf("%q is not in GPT-2's byte-level alphabet", r)
		}
		b = append(b, c)
	}
	return b, nil
}

// rankSplit is rank-BPE on token with only ranks below maxRank (as in
// transformers' convert_slow_tokenizer.bpe): repeatedly join the adjacent
// parts whose concatenation has the lowest rank. It returns the parts.
func rankSplit(ranks map[string]int, token []byte, maxRank int) [][]byte {
	bounds := make([]int, len(token)+1) // part k is token[bounds[k]:bounds[k+1]]
	for i := range bounds {
		bounds[i] = i
	}
	for len(bounds) > 2 {
		best, bestRank := -1, maxRank
		for k := 0; k+2 < len(bounds); k++ {
			if r, ok := ranks[string(token[bounds[k]:bounds[k+2]])]; ok && r < bestRank {
				best, bestRank = k, r
			}
		}
		if best < 0 {
			break
		}
		bounds = append(bounds[:best+1], bounds[best+2:]...)
	}
	parts := make([][]byte, len(bounds)-1)
	for k := range parts {
		parts[k] = token[bounds[k]:bounds[k+1]]
	}
	return parts
}

// abbrev shortens s for an error message.
func abbrev(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
