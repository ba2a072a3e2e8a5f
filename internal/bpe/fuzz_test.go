package bpe

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode compares Encode with the naive encoder and checks that Decode
// inverts it up to the UTF-8 repair. Seeds: testdata/fuzz/FuzzEncode and
// the strings below.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{
		"", "Hello world!", "it's  a\t\ttest\n\n", "a" + EOTText + "b", "<|endoftext|", "\xe2\x82 €",
		"日本語 👍🏽 café", "   \n  x", "123 4567 ½", "'s'S 'll's", "x\u00a0\u3000 y\u2028",
	} {
		f.Add(s)
	}
	tok, naive := gpt2(f)
	f.Fuzz(func(t *testing.T, s string) {
		got := tok.Encode(s)
		if want := naive.encode(s); !slices.Equal(got, want) {
			t.Fatalf("Encode(%q) = %v, naive %v", s, got, want)
		}
		back, err := tok.Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if want := ToValidUTF8(s); back != want {
			t.Fatalf("Decode(Encode(%q)) = %q, want %q", s, back, want)
		}
	})
}

// FuzzToValidUTF8 compares the repair of invalid UTF-8 with the brute-force
// reference.
func FuzzToValidUTF8(f *testing.F) {
	for _, s := range []string{"", "ok", "\xff", "\xe2\x82A", "\xed\xa0\x80", "\xf0\x9f\x98", "\xf4\x90\x80\x80", "\xef\xbf\xbd"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := ToValidUTF8(string(b))
		if !utf8.ValidString(got) {
			t.Fatalf("ToValidUTF8(%q) = %q is not valid UTF-8", b, got)
		}
		if want := toValidUTF8Naive(string(b)); got != want {
			t.Fatalf("ToValidUTF8(%q) = %q, want %q", b, got, want)
		}
		if utf8.Valid(b) && got != string(b) {
			t.Fatalf("ToValidUTF8 changed valid input %q", b)
		}
	})
}

// FuzzParseMerges checks that parseMerges never panics and that what it
// accepts has two non-empty, space-free halves on lines it names.
func FuzzParseMerges(f *testing.F) {
	f.Add([]byte("#version: 0.2\nĠ t\nĠ a\n"))
	f.Add([]byte("a b\r\n\nc d"))
	f.Add([]byte("a b c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		merges, lines, err := parseMerges(b)
		if err != nil {
			return
		}
		if len(merges) != len(lines) {
			t.Fatalf("%d merges, %d line numbers", len(merges), len(lines))
		}
		for i, m := range merges {
			if m[0] == "" || m[1] == "" || strings.Contains(m[0]+m[1], " ") {
				t.Fatalf("merge %d = %q", i, m)
			}
		}
	})
}
