package safetensors

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is
// self-consistent: tensors tile the data section, every accessor works, and
// re-encoding the header reproduces the same file description.
// Seeds: testdata/fuzz/FuzzParse (valid files, truncations, bad JSON).
func FuzzParse(f *testing.F) {
	f.Add(handFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(handFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, buf []byte) {
		file, err := Parse(buf)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			return
		}
		defer file.Close()
		ts := file.Tensors()
		var pos int64
		for _, ti := range ts {
			n, ok := dtype.CheckedProduct(int64(ti.DType.Size()), ti.Shape)
			if ti.Begin != pos || !ok || n != ti.End-ti.Begin {
				t.Fatalf("tensor %+v breaks the tiling at %d", ti, pos)
			}
			pos = ti.End
			raw, err := file.Raw(ti.Name)
			if err != nil || int64(len(raw)) != ti.End-ti.Begin {
				t.Fatalf("Raw(%q) = %d bytes, %v", ti.Name, len(raw), err)
			}
			switch ti.DType {
			case F32, F16, BF16, F64:
				v, err := file.Float32(ti.Name)
				if err != nil || len(v) != ti.NumElements() {
					t.Fatalf("Float32(%q) = %d values, %v", ti.Name, len(v), err)
				}
			case I64, I32, I16, I8, U8, BOOL, U16, U32:
				if _, err := file.Int64(ti.Name); err != nil {
					t.Fatalf("Int64(%q): %v", ti.Name, err)
				}
				_, _ = file.Int32(ti.Name) // may be out of range
			}
		}
		if pos != int64(len(file.data)) {
			t.Fatalf("tensors cover %d of %d data bytes", pos, len(file.data))
		}
		meta := file.Metadata()
		if len(meta) == 0 {
			meta = nil
		}
		hdr, err := encodeHeader(ts, meta)
		if err != nil {
			t.Fatalf("encodeHeader: %v", err)
		}
		again, err := Parse(append(hdr, file.data...))
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !reflect.DeepEqual(again.Tensors(), ts) || !reflect.DeepEqual(again.Metadata(), file.Metadata()) ||
			!bytes.Equal(again.data, file.data) {
			t.Fatalf("re-encoded file differs:\n%+v\n%+v", again.Tensors(), ts)
		}
	})
}
