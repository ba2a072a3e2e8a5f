package owt

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/pyutf8"
)

// textVectors is testdata/text_vectors.json, written by Python 3.11.2 with
// testdata/gen/gen_owt_text.py (run it from the repository root to
// regenerate): str.isspace over all code points, bytes.decode("utf-8",
// errors="replace") and the openwebtext clean-up
// re.sub("\n\n\n+", "\n\n", text).strip().
type textVectors struct {
	Fixture   string `json:"fixture"`
	Version   int    `json:"version"`
	IsSpace   []rune `json:"isspace"`
	UTF8      []hexCase
	Normalize []hexCase
}

type hexCase struct {
	In  string `json:"in"`
	Out string `json:"out"`
}

func loadTextVectors(t *testing.T) *textVectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "text_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v textVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Fixture != "owt-text-vectors" || v.Version != 1 {
		t.Fatalf("text_vectors.json: fixture %q version %d (rerun testdata/gen/gen_owt_text.py)", v.Fixture, v.Version)
	}
	return &v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPyIsSpace(t *testing.T) {
	v := loadTextVectors(t)
	want := map[rune]bool{}
	for _, r := range v.IsSpace {
		want[r] = true
	}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if pyIsSpace(r) != want[r] {
			t.Errorf("pyIsSpace(%U) = %v, want %v (Python str.isspace)", r, pyIsSpace(r), want[r])
		}
	}
}

func TestDecodeUTF8AgainstPython(t *testing.T) {
	v := loadTextVectors(t)
	for _, c := range v.UTF8 {
		in, want := unhex(t, c.In), string(unhex(t, c.Out))
		got, n := pyutf8.Bytes(in)
		if got != want {
			t.Errorf("pyutf8.Bytes(%x) = %x, want %x", in, got, want)
		}
		if wantN := strings.Count(want, "\uFFFD") - strings.Count(string(in), "\uFFFD"); utf8.Valid(in) && n != 0 || !utf8.Valid(in) && n != wantN {
			t.Errorf("pyutf8.Bytes(%x) replaced %d, want %d", in, n, wantN)
		}
	}
}

func TestNormalizeAgainstPython(t *testing.T) {
	v := loadTextVectors(t)
	for _, c := range v.Normalize {
		in, want := unhex(t, c.In), string(unhex(t, c.Out))
		if got, _ := normalizeDoc(in); got != want {
			t.Errorf("normalizeDoc(%q) = %q, want %q", in, got, want)
		}
	}
}

// collapseNewlinesNaive is the reference for collapseNewlines.
func collapseNewlinesNaive(s string) string {
	for strings.Contains(s, "\n\n\n") {
		s = strings.ReplaceAll(s, "\n\n\n", "\n\n")
	}
	return s
}

func FuzzDecodeUTF8(f *testing.F) {
	for _, s := range []string{"", "abc", "\xe2\x82", "\xf0\x9f\x98A", "\xed\xa0\x80", "a\n\n\n\nb\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, n := pyutf8.Bytes(b)
		if !utf8.ValidString(s) {
			t.Fatalf("pyutf8.Bytes(%x) = %x is not valid UTF-8", b, s)
		}
		if utf8.Valid(b) && (s != string(b) || n != 0) {
			t.Fatalf("pyutf8.Bytes(%x) changed valid input to %x", b, s)
		}
		// Each replacement covers 1 to 3 bytes.
		if n > len(b) || len(s) < len(b)-2*n {
			t.Fatalf("pyutf8.Bytes(%x): %d replacements, %d bytes out", b, n, len(s))
		}
		if got, want := collapseNewlines(s), collapseNewlinesNaive(s); got != want {
			t.Fatalf("collapseNewlines(%q) = %q, want %q", s, got, want)
		}
	})
}
