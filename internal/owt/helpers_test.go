package owt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// compress encodes data with "gz", "zst", "xz" or "" (none).
func compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "":
		return data
	case "gz":
		w = gzip.NewWriter(&buf)
	case "zst":
		w, err = zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	case "xz":
		w, err = xz.NewWriter(&buf)
	default:
		t.Fatalf("unknown compression %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jsonLines encodes docs as {"text": doc, "url": …} lines.
func jsonLines(t testing.TB, docs []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i, d := range docs {
		b, err := json.Marshal(map[string]any{"url": "https://example.com/" + string(rune('a'+i%26)), "text": d})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

type tarMember struct {
	name string
	data []byte
	typ  byte // 0 means tar.TypeReg
}

// buildTar writes members as a tar archive.
func buildTar(t testing.TB, members []tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Typeflag: m.typ, Size: int64(len(m.data)), Format: tar.FormatGNU}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
			h.Linkname = "target"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// subsetTar builds an OpenWebText-style archive: one .xz member per group,
// each an xz tar of .txt documents named after the group.
func subsetTar(t testing.TB, groups [][]string) []byte {
	t.Helper()
	var outer []tarMember
	for g, docs := range groups {
		var inner []tarMember
		for i, d := range docs {
			inner = append(inner, tarMember{name: filepath.Join("g", string(rune('a'+g)), string(rune('a'+i%26))+".txt"), data: []byte(d)})
		}
		outer = append(outer, tarMember{name: "openwebtext/" + string(rune('a'+g)) + "_data.xz", data: compress(t, "xz", buildTar(t, inner))})
	}
	return buildTar(t, outer)
}

// readAll drains r; it fails the test on an error other than io.EOF.
func readAll(t testing.TB, r *Reader) []string {
	t.Helper()
	var docs []string
	for {
		d, err := r.Next()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
}

// readUntilError drains r and returns the documents and the final error
// (nil for io.EOF).
func readUntilError(r *Reader) ([]string, error) {
	var docs []string
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, d)
	}
}

// openAll opens path and reads it to the end.
func openAll(t testing.TB, path string, o Options) ([]string, Stats) {
	t.Helper()
	r, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	docs := readAll(t, r)
	return docs, r.Stats()
}

// wantErr fails unless err is non-nil, starts with "owt: " and contains
// every fragment.
func wantErr(t testing.TB, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", fragments)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.HasPrefix(msg, "owt: ") {
		t.Errorf("error %q lacks the package prefix", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}
