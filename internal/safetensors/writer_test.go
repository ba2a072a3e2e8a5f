package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

var allDTypes = []DType{F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U64, U32, U16, F8E4M3, F8E5M2}

// Every dtype, several shapes (scalar and empty included) survive
// WriteFile → Open byte for byte, with the metadata.
func TestRoundTripAllDTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var tensors []Tensor
	for _, dt := range allDTypes {
		for _, shape := range [][]int{{}, {3}, {2, 3, 5}, {4, 0}} {
			n, _ := dtype.CheckedProduct(int64(dt.Size()), shape)
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			tensors = append(tensors, Tensor{Name: string(dt) + "/" + strings.Repeat("x", len(shape)) + string(rune('a'+len(tensors)%26)), DType: dt, Shape: shape, Data: data})
		}
	}
	meta := map[string]string{"format": "pt", "note": `quotes " and <html> & unicode é`}
	path := filepath.Join(t.TempDir(), "all.safetensors")
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); !reflect.DeepEqual(got, meta) {
		t.Errorf("Metadata() = %v, want %v", got, meta)
	}
	if len(f.Tensors()) != len(tensors) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors()), len(tensors))
	}
	for _, want := range tensors {
		ti, ok := f.Tensor(want.Name)
		if !ok || ti.DType != want.DType || !slices.Equal(ti.Shape, want.Shape) {
			t.Errorf("Tensor(%q) = %+v, want dtype %s shape %v", want.Name, ti, want.DType, want.Shape)
		}
		raw, err := f.Raw(want.Name)
		if err != nil || !bytes.Equal(raw, want.Data) {
			t.Errorf("Raw(%q) differs (err %v)", want.Name, err)
		}
	}
	// Offsets follow the declared order.
	for i, ti := range f.Tensors() {
		if ti.Name != tensors[i].Name {
			t.Fatalf("tensor %d is %q, want %q (declared order)", i, ti.Name, tensors[i].Name)
		}
	}
}

// The exact bytes for a small file, checked against the format description:
// compact JSON, __metadata__ first, declared order, space padding to 8.
func TestHeaderBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.safetensors")
	err := WriteFile(path, []Tensor{
		{Name: "b", DType: F32, Shape: []int{2}, Data: le([]float32{1, 2})},
		{Name: "a", DType: I64, Shape: []int{}, Data: le(int64(-1))},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	want := handFile(header, le([]float32{1, 2}, int64(-1)))
	if !bytes.Equal(got, want) {
		t.Errorf("file bytes\n%q\nwant\n%q", got, want)
	}
	if n := binary.LittleEndian.Uint64(got); n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	// Without metadata there is no __metadata__ entry at all.
	if err := WriteFile(path, []Tensor{{Name: "z", DType: U8, Shape: []int{1}, Data: []byte{5}}}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(path)
	want = handFile(`{"z":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}   `, []byte{5}) // 53 + 3 = 56
	if !bytes.Equal(got, want) {
		t.Errorf("file bytes\n%q\nwant\n%q", got, want)
	}
}

// WriteFloat32 rounds to F16 and BF16 exactly as internal/dtype does, and
// values may arrive in chunks that straddle tensors of different dtypes.
func TestWriteFloat32Conversion(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, 3*40000) // > chunkElems per tensor
	for i := range vals {
		vals[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(12)-6)))
	}
	vals[0], vals[1], vals[2] = 65520, 1+1.0/2048, float32(math.Inf(-1)) // F16: rounds to Inf; a tie, to even
	path := filepath.Join(t.TempDir(), "f.safetensors")
	w, err := Create(path, []TensorInfo{
		{Name: "h", DType: F16, Shape: []int{200, 200}},
		{Name: "empty", DType: F32, Shape: []int{0}},
		{Name: "bf", DType: BF16, Shape: []int{40000}},
		{Name: "d", DType: F64, Shape: []int{20000}},
		{Name: "s", DType: F32, Shape: []int{20000}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for rest := vals; len(rest) > 0; {
		k := min(len(rest), 1+r.IntN(30000))
		if err := w.WriteFloat32(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	check := func(name string, in []float32, conv func(float32) float32) {
		t.Helper()
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range in {
			if want := conv(x); math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Fatalf("%s[%d] = %g, want %g (from %g)", name, i, got[i], want, x)
			}
		}
	}
	check("h", vals[:40000], func(x float32) float32 { return dtype.Float16ToFloat32(dtype.Float32ToFloat16(x)) })
	check("bf", vals[40000:80000], func(x float32) float32 { return dtype.BFloat16ToFloat32(dtype.Float32ToBFloat16(x)) })
	check("d", vals[80000:100000], func(x float32) float32 { return x })
	check("s", vals[100000:], func(x float32) float32 { return x })
	if h, _ := f.Float32("h"); h[0] != float32(math.Inf(1)) || h[1] != 1 || h[2] != float32(math.Inf(-1)) {
		t.Errorf("F16 specials = %v, want [+Inf 1 -Inf]", h[:3])
	}
	if raw, _ := f.Raw("d"); math.Float64frombits(binary.LittleEndian.Uint64(raw)) != float64(vals[80000]) {
		t.Errorf("F64 not widened exactly")
	}
}

// Raw writes and typed writes mix, and integer writes convert between I32
// and I64.
func TestWriterMixedAndInts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.safetensors")
	w, err := Create(path, []TensorInfo{
		{Name: "tokens", DType: I32, Shape: []int{2, 3}},
		{Name: "indptr", DType: I64, Shape: []int{4}},
		{Name: "narrow", DType: I32, Shape: []int{2}},
		{Name: "x", DType: F32, Shape: []int{3}},
	}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { _, err := w.Write(le(int32(1))); return err },
		func() error { return w.WriteInt32([]int32{2, 3, -4, 5, 6}) },
		func() error { return w.WriteInt32([]int32{-1, 1 << 30}) },
		func() error { return w.WriteInt64([]int64{1 << 40, 7, -2, math.MaxInt32}) },
		func() error { _, err := w.Write(Float32Bytes(nil, []float32{0.5})); return err },
		func() error { return w.WriteFloat32([]float32{1.5, -2.5}) },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Close = %v", err)
	}
	if err := w.Close(); err == nil {
		t.Errorf("second Close succeeded")
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := f.Int32("tokens"); !reflect.DeepEqual(got, []int32{1, 2, 3, -4, 5, 6}) {
		t.Errorf("tokens = %v", got)
	}
	if got, _ := f.Int64("indptr"); !reflect.DeepEqual(got, []int64{-1, 1 << 30, 1 << 40, 7}) {
		t.Errorf("indptr = %v", got)
	}
	if got, _ := f.Int32("narrow"); !reflect.DeepEqual(got, []int32{-2, math.MaxInt32}) {
		t.Errorf("narrow = %v", got)
	}
	if got, _ := f.Float32("x"); !reflect.DeepEqual(got, []float32{0.5, 1.5, -2.5}) {
		t.Errorf("x = %v", got)
	}
	if f.Metadata()["k"] != "v" {
		t.Errorf("metadata = %v", f.Metadata())
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		tensors []TensorInfo
		meta    map[string]string
		want    string
	}{
		{"empty name", []TensorInfo{{DType: F32}}, nil, "tensor 0 has an empty name"},
		{"reserved name", []TensorInfo{{Name: "__metadata__", DType: F32}}, nil, `tensor name "__metadata__" is reserved`},
		{"duplicate", []TensorInfo{{Name: "a", DType: F32}, {Name: "a", DType: F32}}, nil, `tensor "a" is declared twice`},
		{"bad dtype", []TensorInfo{{Name: "a", DType: "F128"}}, nil, `tensor "a": unknown dtype "F128"`},
		{"negative dim", []TensorInfo{{Name: "a", DType: F32, Shape: []int{-1}}}, nil, "negative dimension"},
		{"overflow", []TensorInfo{{Name: "a", DType: F32, Shape: []int{1 << 31, 1 << 31}}}, nil, "overflows"},
		{"total overflow", []TensorInfo{{Name: "a", DType: U8, Shape: []int{math.MaxInt64}}, {Name: "b", DType: U8, Shape: []int{1}}}, nil, `tensor "b"`},
		{"bad utf8 name", []TensorInfo{{Name: "\xff", DType: U8}}, nil, "not valid UTF-8"},
		{"bad utf8 metadata", nil, map[string]string{"a": "\xff"}, "not valid UTF-8"},
		{"missing dir", []TensorInfo{{Name: "a", DType: U8}}, nil, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "out.safetensors")
			if tc.name == "missing dir" {
				path = filepath.Join(dir, "nodir", "out.safetensors")
			}
			w, err := Create(path, tc.tensors, tc.meta)
			if err == nil {
				w.Abort()
				t.Fatalf("Create succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Create error = %q, want the path and %q", err, tc.want)
			}
		})
	}
	assertDir(t, dir)
}

// assertDir checks that dir holds exactly the named files.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) && len(got)+len(names) > 0 {
		t.Errorf("directory holds %q, want %q", got, names)
	}
}

// A failed write leaves no new file and no temporary file behind, and an
// existing destination keeps its old content until a successful rename.
func TestAtomicWrite(t *testing.T) {
	tensors := []TensorInfo{{Name: "a", DType: F32, Shape: []int{2}}, {Name: "b", DType: I32, Shape: []int{1}}}
	tests := []struct {
		name  string
		write func(w *Writer) error // error from the writes themselves, if any
		want  string                // Close error
	}{
		{"too few bytes", func(w *Writer) error { return w.WriteFloat32([]float32{1, 2}) }, `wrote 8 of 12 data bytes; tensor "b" is incomplete`},
		{"nothing written", func(w *Writer) error { return nil }, "wrote 0 of 12 data bytes"},
		{"too many bytes", func(w *Writer) error { _, err := w.Write(make([]byte, 13)); return err }, "1 bytes written past the end"},
		{"too many values", func(w *Writer) error {
			if err := w.WriteFloat32([]float32{1, 2}); err != nil {
				return err
			}
			return w.WriteInt32([]int32{1, 2})
		}, "WriteInt32: more values than the declared tensors hold"},
		{"wrong dtype", func(w *Writer) error { return w.WriteInt32([]int32{1}) }, `WriteInt32: tensor "a" has dtype F32`},
		{"split element", func(w *Writer) error {
			if _, err := w.Write([]byte{1}); err != nil {
				return err
			}
			return w.WriteFloat32([]float32{1})
		}, `tensor "a": position 1 is inside an element`},
		{"int64 out of range", func(w *Writer) error {
			if err := w.WriteFloat32([]float32{1, 2}); err != nil {
				return err
			}
			return w.WriteInt64([]int64{1 << 31})
		}, `WriteInt64: tensor "b": element 0 = 2147483648 does not fit in I32`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.safetensors")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := Create(path, tensors, nil)
			if err != nil {
				t.Fatal(err)
			}
			werr := tc.write(w)
			if werr != nil && !strings.Contains(werr.Error(), tc.want) {
				t.Errorf("write error = %v, want %q", werr, tc.want)
			}
			if werr != nil {
				// The error sticks.
				if _, err := w.Write(nil); err == nil {
					t.Errorf("Write after an error succeeded")
				}
			}
			err = w.Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Close error = %v, want the path and %q", err, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("destination = %q, want it untouched", got)
			}
			assertDir(t, dir, "out.safetensors")
		})
	}

	t.Run("replace", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.safetensors")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := Create(path, tensors, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFloat32([]float32{1, 2}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteInt32([]int32{3}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("destination = %q before Close, want it untouched", got)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		assertDir(t, dir, "out.safetensors")
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got, _ := f.Int32("b"); !reflect.DeepEqual(got, []int32{3}) {
			t.Errorf("b = %v", got)
		}
		if w.WriteFloat32([]float32{1}) == nil {
			t.Errorf("WriteFloat32 after Close succeeded")
		}
	})

	t.Run("abort", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.safetensors")
		w, err := Create(path, tensors, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFloat32([]float32{1, 2}); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Errorf("second Abort = %v", err)
		}
		assertDir(t, dir)
		if err := w.Close(); err == nil {
			t.Errorf("Close after Abort succeeded")
		}
		assertDir(t, dir)
	})
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	err := WriteFile(path, []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}, {Name: "b", DType: F16, Shape: []int{2, 2}, Data: make([]byte, 7)}}, nil)
	if err == nil || !strings.Contains(err.Error(), `tensor "b": 7 data bytes, shape [2 2] × F16 needs 8`) {
		t.Errorf("WriteFile error = %v", err)
	}
	assertDir(t, dir)
}

func TestFloat32Bytes(t *testing.T) {
	got := Float32Bytes([]byte{0xAA}, []float32{1, -0.5})
	want := []byte{0xAA, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xbf}
	if !bytes.Equal(got, want) {
		t.Errorf("Float32Bytes = %x, want %x", got, want)
	}
	if got := Float32Bytes(nil, nil); len(got) != 0 {
		t.Errorf("Float32Bytes(nil, nil) = %x", got)
	}
}

// Sum reports what reading the file back would: a data section larger
// than the write buffer, so large writes that bypass it are hashed too.
func TestWriterSum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.safetensors")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	w, err := Create(path, []TensorInfo{{Name: "h", DType: F16, Shape: []int{3}}, {Name: "big", DType: U8, Shape: []int{len(big)}}},
		map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32([]float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	if size, sum := w.Sum(); size != 0 || sum != "" {
		t.Errorf("Sum before Close = %d, %q", size, sum)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := provenance.Hash(path)
	if err != nil {
		t.Fatal(err)
	}
	if size, sum := w.Sum(); size != want.Size || sum != want.SHA256 {
		t.Errorf("Sum = %d, %s; provenance.Hash = %d, %s", size, sum, want.Size, want.SHA256)
	}
}

// IntBytes is the little-endian two's-complement encoding, hand-checked.
func TestIntBytes(t *testing.T) {
	if got := IntBytes(nil, []int32{1, -2}); !bytes.Equal(got, []byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff}) {
		t.Errorf("IntBytes(int32) = %x", got)
	}
	if got := IntBytes([]byte{9}, []int64{-1}); !bytes.Equal(got, []byte{9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("IntBytes(int64) = %x", got)
	}
}
