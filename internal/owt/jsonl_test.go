package owt

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var jsonDocs = []string{
	"First document.\n\nWith paragraphs.",
	"",
	"Unicode: caf\u00e9 \u4e16\u754c \U0001F600, escapes \" \\ \t",
	"<|endoftext|> stays text here",
	strings.Repeat("long ", 20000),
}

func TestJSONLCompressions(t *testing.T) {
	plain := jsonLines(t, jsonDocs)
	for _, tc := range []struct{ name, kind string }{
		{"docs.jsonl", ""},
		{"docs.jsonl.gz", "gz"},
		{"docs.jsonl.zst", "zst"},
		{"docs.jsonl.xz", "xz"},
		{"docs.json", ""},
		{"docs.ndjson.gz", "gz"},
		{"no-extension-but-json", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), tc.name, compress(t, tc.kind, plain))
			docs, st := openAll(t, p, Options{})
			if !reflect.DeepEqual(docs, jsonDocs) {
				t.Errorf("documents differ: got %d, want %d", len(docs), len(jsonDocs))
			}
			if st.Documents != int64(len(jsonDocs)) || st.Empty != 1 || st.Files != 1 || st.Read != st.Documents {
				t.Errorf("stats = %+v", st)
			}
			var bytes int64
			for _, d := range jsonDocs {
				bytes += int64(len(d))
			}
			if st.Bytes != bytes {
				t.Errorf("stats bytes = %d, want %d", st.Bytes, bytes)
			}
		})
	}
}

// TestJSONBz2 reads testdata/docs.jsonl.bz2, written with Python's bz2
// module by testdata/gen/gen_owt_text.py (Go has no bzip2 writer).
func TestJSONBz2(t *testing.T) {
	docs, _ := openAll(t, filepath.Join("testdata", "docs.jsonl.bz2"), Options{})
	if want := []string{"bzip2 one", "bzip2 two"}; !reflect.DeepEqual(docs, want) {
		t.Errorf("documents = %q, want %q", docs, want)
	}
}

func TestJSONRecords(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []string
		skipped  map[string]int64
		replaced int64
	}{
		{"blank lines and CRLF", "\n{\"text\":\"a\"}\r\n  \r\n{\"text\":\"b\"}", []string{"a", "b"}, map[string]int64{"blank line": 2}, 0},
		{"byte order mark", "\xef\xbb\xbf{\"text\":\"a\"}\n", []string{"a"}, map[string]int64{}, 0},
		{"null text", "{\"text\":null}\n{\"text\":\"b\"}\n", []string{"b"}, map[string]int64{"null text": 1}, 0},
		{"exact-case key, last duplicate wins", `{"Text":"no","text":"yes"}` + "\n" + `{"text":"x","text":"y"}`, []string{"yes", "y"}, map[string]int64{}, 0},
		{"other fields of any type", `{"id":1,"meta":{"a":[1,2]},"text":"t","url":null}`, []string{"t"}, map[string]int64{}, 0},
		{"invalid UTF-8 replaced like Python", "{\"text\":\"a\xe2\x82b\xffc\"}\n", []string{"a\uFFFDb\uFFFDc"}, map[string]int64{}, 1},
		{"escaped surrogate pair", `{"text":"\ud83d\ude00"}`, []string{"\U0001F600"}, map[string]int64{}, 0},
		{"JSON array", " [ {\"text\":\"a\"}, {\"text\":null}, {\"text\":\"\xff\"} ] \n", []string{"a", "\uFFFD"}, map[string]int64{"null text": 1}, 1},
		{"empty JSON array and more", "[]", nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := Stats{Skipped: map[string]int64{}}
			s, err := newJSONSource("mem.jsonl", strings.NewReader(tc.in), DefaultMaxDocBytes, &st)
			if err != nil {
				t.Fatal(err)
			}
			var docs []string
			for {
				d, err := s.next()
				if err != nil {
					if err.Error() != "EOF" {
						t.Fatal(err)
					}
					break
				}
				docs = append(docs, d)
			}
			if !reflect.DeepEqual(docs, tc.want) {
				t.Errorf("documents = %q, want %q", docs, tc.want)
			}
			if tc.skipped != nil && !reflect.DeepEqual(st.Skipped, tc.skipped) {
				t.Errorf("skipped = %v, want %v", st.Skipped, tc.skipped)
			}
			if st.Replaced != tc.replaced {
				t.Errorf("replaced = %d, want %d", st.Replaced, tc.replaced)
			}
		})
	}
}

func TestJSONErrors(t *testing.T) {
	gz := compress(t, "gz", jsonLines(t, jsonDocs))
	zst := compress(t, "zst", jsonLines(t, jsonDocs))
	xzd := compress(t, "xz", jsonLines(t, jsonDocs))
	corrupt := func(b []byte) []byte {
		c := bytes.Clone(b)
		for i := len(c) / 3; i < len(c)/3+8; i++ {
			c[i] ^= 0x5a
		}
		return c
	}
	tests := []struct {
		name  string
		file  string
		data  []byte
		max   int
		frags []string
	}{
		{"no text field", "a.jsonl", []byte("{\"text\":\"ok\"}\n{\"content\":\"x\",\"url\":\"u\"}\n"), 0, []string{"a.jsonl: line 2", `no "text" field`, `"content", "url"`}},
		{"text not a string", "a.jsonl", []byte(`{"text":12}`), 0, []string{"a.jsonl: line 1", `"text" is a JSON number, not a string`}},
		{"not an object", "a.jsonl", []byte("[1]\n"), 0, []string{"a.jsonl: element 1", "not an object"}},
		{"a string line", "a.jsonl", []byte("\"x\"\n"), 0, []string{"line 1", "a JSON string, not an object"}},
		{"malformed", "a.jsonl", []byte("{\"text\":\"a\"}\n{\"text\":\"b\n"), 0, []string{"a.jsonl: line 2"}},
		{"line too long", "a.jsonl", jsonLines(t, []string{"short", strings.Repeat("x", 5000)}), 1000, []string{"a.jsonl: line 2 is longer than 1000 bytes"}},
		{"truncated gzip", "a.jsonl.gz", gz[:len(gz)/2], 0, []string{"a.jsonl.gz", "line 1: corrupt or truncated gz stream"}},
		{"corrupt gzip", "a.jsonl.gz", corrupt(gz), 0, []string{"a.jsonl.gz"}},
		{"truncated zstd", "a.jsonl.zst", zst[:len(zst)-10], 0, []string{"a.jsonl.zst"}},
		{"corrupt zstd", "a.jsonl.zst", corrupt(zst), 0, []string{"a.jsonl.zst"}},
		{"truncated xz", "a.jsonl.xz", xzd[:len(xzd)-10], 0, []string{"a.jsonl.xz"}},
		{"corrupt xz", "a.jsonl.xz", corrupt(xzd), 0, []string{"a.jsonl.xz"}},
		{"gzip header only", "a.jsonl.gz", gz[:5], 0, []string{"a.jsonl.gz", "gz stream"}},
		{"unterminated array", "a.json", []byte(`[{"text":"a"}, {"text":"b"}`), 0, []string{"a.json: element 3"}},
		{"data after the array", "a.json", []byte(`[{"text":"a"}] {"text":"b"}`), 0, []string{"a.json: data after the JSON array"}},
		{"empty file", "a.jsonl", nil, 0, []string{"a.jsonl: no documents"}},
		{"only null texts", "a.jsonl", []byte("{\"text\":null}\n\n"), 0, []string{"no documents", "1 blank line", "1 null text"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), tc.file, tc.data)
			r, err := Open(p, Options{MaxDocBytes: tc.max})
			if err != nil {
				wantErr(t, err, tc.frags...)
				return
			}
			defer r.Close()
			_, err = readUntilError(r)
			wantErr(t, err, tc.frags...)
		})
	}
}
