package npy

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseHeader checks that ParseHeader never panics, that what it
// accepts is consistent, and that re-encoding an accepted header the way
// numpy does parses back to the same header. Seeds: testdata/fuzz/FuzzParseHeader.
func FuzzParseHeader(f *testing.F) {
	f.Add(numpy124Int64x2x3)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(bytes.NewReader(b))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "npy: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			return
		}
		if h.DataOffset < 10 || h.DataOffset > int64(len(b)) {
			t.Fatalf("DataOffset %d outside the %d-byte input", h.DataOffset, len(b))
		}
		if _, ok := numElements(h.Shape); !ok {
			t.Fatalf("shape %v overflows but was accepted", h.Shape)
		}
		for _, d := range h.Shape {
			if d < 0 {
				t.Fatalf("negative dimension in %v", h.Shape)
			}
		}
		if strings.ContainsAny(h.Descr, "'\\\n") {
			return // encodeHeader does not escape
		}
		enc, err := encodeHeader(h.Descr, h.FortranOrder, h.Shape)
		if err != nil {
			t.Fatalf("encodeHeader(%+v): %v", h, err)
		}
		h2, err := ParseHeader(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("re-encoded header %q does not parse: %v", enc, err)
		}
		h.DataOffset = int64(len(enc))
		if len(enc)%arrayAlign != 0 || !reflect.DeepEqual(h, h2) {
			t.Fatalf("re-encoded header = %+v (%d bytes), want %+v", h2, len(enc), h)
		}
	})
}
