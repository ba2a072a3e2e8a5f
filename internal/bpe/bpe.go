package bpe

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"
)

const (
	// EOT is the id of "<|endoftext|>", GPT-2's only special token; TL uses
	// it as BOS, EOS and pad.
	EOT = 50256
	// EOTText is the special token's text.
	EOTText = "<|endoftext|>"
	// Pattern is GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py; the
	// same string is tiktoken's r50k_base pat_str and HF's ByteLevel regex).
	Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

	vocabSize = 50257 // config.json vocab_size
	numMerges = 50000 // merges.txt lines after "#version: 0.2"

	// r50kFile is the asset name tiktoken-go-loader v0.0.2 embeds; the
	// loader uses only the path's base name, so nothing is fetched.
	r50kFile = "r50k_base.tiktoken"
)

// Tokenizer encodes text to GPT-2 ids and back.
type Tokenizer struct {
	re      *regexp2.Regexp
	ranks   map[string]int // ordinary token bytes → id (= merge priority), V−1 entries
	decoder [][]byte       // (V) id → bytes; EOT → "<|endoftext|>"
}

// GPT2 returns the tokenizer of GPT-2 small from the r50k_base ranks that
// tiktoken-go-loader embeds in the binary (no files, no network). It takes
// ~50 ms; share the result.
func GPT2() (*Tokenizer, error) {
	ranks, err := tiktokenloader.NewOfflineLoader().LoadTiktokenBpe(r50kFile)
	if err != nil {
		return nil, fmt.Errorf("bpe: load embedded %s: %w", r50kFile, err)
	}
	t, err := newTokenizer(ranks)
	if err != nil {
		return nil, fmt.Errorf("bpe: embedded %s: %w", r50kFile, err)
	}
	return t, nil
}

// newTokenizer checks that ranks are GPT-2-shaped (ids 0..V−2 each used
// once, every single byte an id below 256) and builds the encoder.
func newTokenizer(ranks map[string]int) (*Tokenizer, error) {
	if len(ranks) != vocabSize-1 {
		return nil, fmt.Errorf("%d ordinary tokens, want %d", len(ranks), vocabSize-1)
	}
	decoder := make([][]byte, vocabSize)
	for tok, id := range ranks {
		if id < 0 || id >= EOT {
			return nil, fmt.Errorf("token %q has id %d, outside [0, %d)", tok, id, EOT)
		}
		if decoder[id] != nil {
			return nil, fmt.Errorf("id %d is used by %q and %q", id, decoder[id], tok)
		}
		if tok == "" {
			return nil, fmt.Errorf("id %d is the empty string", id)
		}
		if len(tok) == 1 && id >= 256 {
			return nil, fmt.Errorf("single byte %q has id %d, want < 256", tok, id)
		}
		decoder[id] = []byte(tok)
	}
	for c := range 256 {
		if _, ok := ranks[string([]byte{byte(c)})]; !ok {
			return nil, fmt.Errorf("single byte %#02x has no id", c)
		}
	}
	decoder[EOT] = []byte(EOTText)
	re, err := regexp2.Compile(Pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("compile the pre-tokenizer: %w", err)
	}
	re.MatchTimeout = math.MaxInt64 // never time out: matching then never fails
	return &Tokenizer{re: re, ranks: ranks, decoder: decoder}, nil
}

// VocabSize returns the number of ids, 50,257 (EOT is the last).
func (t *Tokenizer) VocabSize() int { return len(t.decoder) }

// Encode returns the GPT-2 ids of text: "<|endoftext|>" becomes EOT,
// everything else ordinary byte-level BPE. Invalid UTF-8 is first repaired
// as ToValidUTF8 does.
func (t *Tokenizer) Encode(text string) []int32 {
	return t.AppendEncode(make([]int32, 0, len(text)/4+1), text)
}

// AppendEncode appends the ids of text to dst and returns the result.
func (t *Tokenizer) AppendEncode(dst []int32, text string) []int32 {
	text = ToValidUTF8(text)
	for {
		i := strings.Index(text, EOTText)
		seg := text
		if i >= 0 {
			seg = text[:i]
		}
		// Segments are pre-tokenized independently, as HF does around an
		// added token: a space before "<|endoftext|>" stays a piece.
		dst = t.appendOrdinary(dst, seg)
		if i < 0 {
			return dst
		}
		dst = append(dst, EOT)
		text = text[i+len(EOTText):]
	}
}

// Decode returns the text of ids, for display: the bytes of the tokens in
// order, with ill-formed UTF-8 (a character cut between tokens) rendered as
// U+FFFD as HF's decode does. An id outside [0, VocabSize) is an error.
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	b := make([]byte, 0, 4*len(ids))
	for i, id := range ids {
		if id < 0 || int(id) >= len(t.decoder) {
			return "", fmt.Errorf("bpe: decode: id %d at position %d is outside [0, %d)", id, i, len(t.decoder))
		}
		b = append(b, t.decoder[id]...)
	}
	return ToValidUTF8(string(b)), nil
}

// appendOrdinary appends the ids of text (valid UTF-8, no special tokens):
// the pieces regexp2 finds with Pattern, each merged by appendPiece.
func (t *Tokenizer) appendOrdinary(dst []int32, text string) []int32 {
	if text == "" {
		return dst
	}
	m, err := t.re.FindStringMatch(text)
	pos, runes := 0, 0 // byte offset of rune index runes; matches are in runes
	for m != nil && err == nil {
		start := advance(text, pos, m.Index-runes)
		end := advance(text, start, m.Length)
		if start != pos { // Pattern matches every rune, so pieces tile the text
			dst = t.appendPretokenized(dst, text[pos:start])
		}
		dst = t.appendPiece(dst, text[start:end])
		pos, runes = end, m.Index+m.Length
		m, err = t.re.FindNextMatch(m)
	}
	// Unreachable with MatchTimeout disabled; if regexp2 ever stops early,
	// the hand-written pre-tokenizer finishes the text.
	return t.appendPretokenized(dst, text[pos:])
}

func (t *Tokenizer) appendPretokenized(dst []int32, text string) []int32 {
	for _, piece := range pretokenize(text) {
		dst = t.appendPiece(dst, piece)
	}
	return dst
}

// advance returns the byte offset n runes after byte offset pos of s.
func advance(s string, pos, n int) int {
	for ; n > 0 && pos < len(s); n-- {
		if s[pos] < utf8.RuneSelf {
			pos++
		} else {
			_, size := utf8.DecodeRuneInString(s[pos:])
			pos += size
		}
	}
	return pos
}
