package pyutf8

import "testing"

// The Python-generated vectors are checked where they live: bpe's
// TestToValidUTF8Golden and owt's TestDecodeUTF8AgainstPython.
func TestReplacements(t *testing.T) {
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{"", "", 0},
		{"abc\uFFFD", "abc\uFFFD", 0},
		{"\xe2\x82", "\uFFFD", 1},
		{"\xe2\x82a", "\uFFFDa", 1},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD", 3},
		{"\xf0\x9f\x98A", "\uFFFDA", 1},
		{"a\xff\xfeb", "a\uFFFD\uFFFDb", 2},
	} {
		got, n := String(c.in)
		if got != c.want || n != c.n {
			t.Errorf("String(%q) = %q, %d; want %q, %d", c.in, got, n, c.want, c.n)
		}
		if got, n := Bytes([]byte(c.in)); got != c.want || n != c.n {
			t.Errorf("Bytes(%q) = %q, %d; want %q, %d", c.in, got, n, c.want, c.n)
		}
	}
}
