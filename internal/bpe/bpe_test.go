package bpe

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

// TestKnownIDs checks ids that TransformerLens's tokenizer gives (also
// asserted by gen_bpe.py and stored in golden.json).
func TestKnownIDs(t *testing.T) {
	tok, _ := gpt2(t)
	for _, tc := range []struct {
		text string
		want []int32
	}{
		{"Hello", []int32{15496}},
		{",", []int32{11}},
		{" world", []int32{995}},
		{"!", []int32{0}},
		{"Hello world!", []int32{15496, 995, 0}},
		{"", nil},
		{EOTText, []int32{EOT}},
		{"a" + EOTText + "b", []int32{64, EOT, 65}},
		{EOTText + EOTText, []int32{EOT, EOT}},
	} {
		t.Run(tc.text, func(t *testing.T) {
			if got := tok.Encode(tc.text); !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
	if got := tok.VocabSize(); got != 50257 {
		t.Errorf("VocabSize() = %d, want 50257", got)
	}
}

// TestGolden compares Encode and the naive encoder with the ids of the
// independent Python implementation (testdata/gen/gen_bpe.py), paragraph by
// paragraph and on the whole file; and checks that Decode gives back the
// repaired text.
func TestGolden(t *testing.T) {
	tok, naive := gpt2(t)
	g, text := loadGolden(t)
	for _, k := range g.Known {
		if got := tok.Encode(k.Text); !slices.Equal(got, k.IDs) {
			t.Errorf("Encode(%q) = %v, want %v", k.Text, got, k.IDs)
		}
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			s := string(text[c.Offset : c.Offset+c.Length])
			if got := tok.Encode(s); !slices.Equal(got, c.IDs) {
				t.Errorf("Encode(%s) differs at token %d:\n got %v\nwant %v", c.Name, firstDiff(got, c.IDs), got, c.IDs)
			}
			if got := naive.encode(s); !slices.Equal(got, c.IDs) {
				t.Errorf("naive encode(%s) differs at token %d:\n got %v\nwant %v", c.Name, firstDiff(got, c.IDs), got, c.IDs)
			}
			dec, err := tok.Decode(c.IDs)
			if err != nil {
				t.Fatal(err)
			}
			if want := ToValidUTF8(s); dec != want {
				t.Errorf("Decode(ids of %s) = %q, want %q", c.Name, dec, want)
			}
		})
	}
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDecodeGolden checks Decode against Python's
// bytes.decode("utf-8", errors="replace") of the token bytes.
func TestDecodeGolden(t *testing.T) {
	tok, _ := gpt2(t)
	g, _ := loadGolden(t)
	for _, c := range g.Decode {
		t.Run(c.Name, func(t *testing.T) {
			got, err := tok.Decode(c.IDs)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.Text {
				t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Text)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tok, _ := gpt2(t)
	for _, ids := range [][]int32{{-1}, {15496, 50257}, {1 << 30}} {
		_, err := tok.Decode(ids)
		if err == nil || !strings.HasPrefix(err.Error(), "bpe: decode: id ") {
			t.Errorf("Decode(%v) error = %v, want an out-of-range error", ids, err)
		}
	}
}

// TestToValidUTF8Golden checks the repair of invalid UTF-8 against Python
// (golden.json "utf8": bytes.decode("utf-8", errors="replace")) and the
// brute-force reference.
func TestToValidUTF8Golden(t *testing.T) {
	g, _ := loadGolden(t)
	for _, c := range g.UTF8 {
		t.Run(c.Hex, func(t *testing.T) {
			b, err := hex.DecodeString(c.Hex)
			if err != nil {
				t.Fatal(err)
			}
			if got := ToValidUTF8(string(b)); got != c.Text {
				t.Errorf("ToValidUTF8(%q) = %q, want %q", b, got, c.Text)
			}
			if got := toValidUTF8Naive(string(b)); got != c.Text {
				t.Errorf("toValidUTF8Naive(%q) = %q, want %q", b, got, c.Text)
			}
		})
	}
}

// TestInvalidUTF8Encode: invalid bytes encode as the U+FFFD Python would
// read, never as the raw bytes.
func TestInvalidUTF8Encode(t *testing.T) {
	tok, _ := gpt2(t)
	for _, tc := range []struct{ in, same string }{
		{"a\xe2\x82b", "a\uFFFDb"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"x\xff<|endoftext|>\xfe", "x\uFFFD<|endoftext|>\uFFFD"},
	} {
		if got, want := tok.Encode(tc.in), tok.Encode(tc.same); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want Encode(%q) = %v", tc.in, got, tc.same, want)
		}
	}
}

// TestPretokenize checks the hand-written pre-tokenizer on the cases
// GPT-2's regex is known for (the \s+(?!\S) lookahead).
func TestPretokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Hello world!", []string{"Hello", " world", "!"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"a\tb", []string{"a", "\t", "b"}},
		{"a \tb", []string{"a", " ", "\t", "b"}},
		{"a\t b", []string{"a", "\t", " b"}},
		{"a\n\n", []string{"a", "\n\n"}},
		{"end  ", []string{"end", "  "}},
		{"it's", []string{"it", "'s"}},
		{"IT'S", []string{"IT", "'", "S"}},
		{"'sam", []string{"'s", "am"}},
		{" 123abc", []string{" 123", "abc"}},
		{" ...", []string{" ..."}},
		{"  ...", []string{" ", " ..."}},
		{"é\u0301", []string{"é", "\u0301"}},
		{"x\u00a0y", []string{"x", "\u00a0", "y"}},
	} {
		if got := pretokenize(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("pretokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestEncodeMatchesNaive compares the fast and naive encoders on 256 KiB of
// generated text.
func TestEncodeMatchesNaive(t *testing.T) {
	tok, naive := gpt2(t)
	text := englishText(256<<10, 1)
	got, want := tok.Encode(text), naive.encode(text)
	if !slices.Equal(got, want) {
		i := firstDiff(got, want)
		t.Fatalf("Encode differs from the naive encoder at token %d of %d: got %v, want %v", i, len(want), got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
	}
	back, err := tok.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if back != text {
		t.Fatal("Decode(Encode(text)) != text")
	}
}

// TestEmbeddedRanksFollowMergeOrder checks on the embedded ranks what
// FromFiles checks on a user's files: each token of id ≥ 256 splits, by
// rank-BPE below its id, into exactly two tokens.
func TestEmbeddedRanksFollowMergeOrder(t *testing.T) {
	gpt2(t)
	// gpt2 fails unless deriveMerges split every rank ≥ 256 in two, and
	// GPT2 has V−1 ranks, so there are numMerges merges.
	if m := shared.merges[0]; m != [2]string{" ", "t"} {
		t.Errorf("merge 0 = %q, want GPT-2's first merge \"Ġ t\"", m)
	}
}
