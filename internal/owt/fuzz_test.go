package owt

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// drainSource reads a source to its end or first error, checking what
// every source promises: valid UTF-8 documents and errors that name the
// input and never read as io.EOF.
func drainSource(t *testing.T, s docSource, cleaned bool) {
	t.Helper()
	defer s.close()
	for range 100_000 {
		d, err := s.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "owt: mem") {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if !utf8.ValidString(d) {
			t.Fatalf("document %q is not valid UTF-8", d)
		}
		if cleaned && (strings.Contains(d, "\n\n\n") || strings.TrimFunc(d, pyIsSpace) != d) {
			t.Fatalf("document %q is not cleaned up", d)
		}
	}
}

// FuzzJSONL feeds arbitrary bytes to the JSON reader (both lines and array
// mode, compressed or not). Seeds: f.Add below and testdata/fuzz/FuzzJSONL.
func FuzzJSONL(f *testing.F) {
	lines := jsonLines(f, []string{"a", "", "b\n\nc"})
	f.Add(lines)
	f.Add([]byte("[{\"text\":\"a\"},{\"text\":null}]"))
	f.Add([]byte("\xef\xbb\xbf{\"text\":\"\xe2\x82\"}\r\n\n{\"Text\":1}"))
	f.Add(compress(f, "gz", lines))
	f.Add(compress(f, "zst", lines))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := Stats{Skipped: map[string]int64{}}
		s, err := newJSONSource("mem", bytes.NewReader(b), 1<<16, &st)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "owt: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		drainSource(t, s, false)
	})
}

// FuzzTar feeds arbitrary bytes to the archive reader. The seeds hold
// inner archives that are uncompressed or gzip (named .xz, which Python's
// tarfile also accepts) rather than xz: the xz decoder allocates the
// dictionary a header asks for (see the package caveats).
// Seeds: f.Add below and testdata/fuzz/FuzzTar.
func FuzzTar(f *testing.F) {
	inner := buildTar(f, []tarMember{
		{name: "d/a.txt", data: []byte("  one\n\n\n\ntwo ")},
		{name: "d/.hidden.txt", data: []byte("h")},
		{name: "d/b.md", data: []byte("m")},
		{name: "d/sub", typ: tar.TypeDir},
		{name: "d/c.txt", data: []byte("\xff\x1c")},
	})
	f.Add(buildTar(f, []tarMember{{name: "o/1.xz", data: inner}, {name: "o/README", data: []byte("r")}}))
	f.Add(buildTar(f, []tarMember{{name: "o/2.xz", data: compress(f, "gz", inner)}}))
	f.Add(compress(f, "gz", buildTar(f, []tarMember{{name: "o/1.xz", data: inner}})))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := Stats{Skipped: map[string]int64{}}
		s, err := newTarSource("mem", bytes.NewReader(b), 1<<16, &st)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "owt: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		drainSource(t, s, true)
	})
}
