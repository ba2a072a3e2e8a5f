package safetensors

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A Reader reports the tensors and metadata a File does and reads the same
// float32 values, whole or in parts, for every float dtype.
func TestReaderMatchesFile(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ts []Tensor
	for i, dt := range []DType{F32, F16, BF16, F64, F32} {
		shape := []int{3 + i, 70000 + i} // the conversion buffer holds 65,536 values
		if i == 4 {
			shape = []int{0, 5}
		}
		vals := make([]float32, shape[0]*shape[1])
		for j := range vals {
			vals[j] = float32(r.NormFloat64())
		}
		b := Float32Bytes(nil, vals)
		switch dt {
		case F16, BF16, F64:
			// Encode through the writer's conversions.
			path := filepath.Join(t.TempDir(), "conv.safetensors")
			w, err := Create(path, []TensorInfo{{Name: "x", DType: dt, Shape: shape}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteFloat32(vals); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := f.Raw("x")
			b = slices.Clone(raw)
			f.Close()
		}
		ts = append(ts, Tensor{Name: string(rune('a' + i)), DType: dt, Shape: shape, Data: b})
	}
	ts = append(ts, Tensor{Name: "ints", DType: I64, Shape: []int{2}, Data: le([]int64{1, 2})})
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(path, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if !reflect.DeepEqual(rd.Tensors(), f.Tensors()) || !reflect.DeepEqual(rd.Metadata(), f.Metadata()) || rd.Path() != path {
		t.Fatalf("Reader header %+v %v, File header %+v %v", rd.Tensors(), rd.Metadata(), f.Tensors(), f.Metadata())
	}
	for _, tt := range ts[:len(ts)-1] {
		want, err := f.Float32(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(want))
		if err := rd.ReadFloat32(got, tt.Name); err != nil {
			t.Fatal(err)
		}
		if !sameBits(got, want) {
			t.Errorf("%s (%s): ReadFloat32 differs from File.Float32", tt.Name, tt.DType)
		}
		if len(want) > 10 {
			lo, hi := 7, len(want)-3
			part := make([]float32, hi-lo)
			if err := rd.ReadFloat32At(part, tt.Name, lo); err != nil {
				t.Fatal(err)
			}
			if !sameBits(part, want[lo:hi]) {
				t.Errorf("%s (%s): ReadFloat32At differs", tt.Name, tt.DType)
			}
		}
	}

	for _, tc := range []struct {
		name  string
		dst   int
		start int
		want  string
	}{
		{"nope", 1, 0, `no tensor "nope"`},
		{"ints", 2, 0, `tensor "ints": dtype I64 cannot be read as float32`},
		{"a", 5, 3*70000 - 4, `elements [209996, 210001) are outside its 210000`},
		{"a", 1, -1, "are outside"},
	} {
		err := rd.ReadFloat32At(make([]float32, tc.dst), tc.name, tc.start)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadFloat32At(%s, %d, %d) = %v, want %q", tc.name, tc.dst, tc.start, err, tc.want)
		}
	}
	if err := rd.ReadFloat32(make([]float32, 3), "a"); err == nil || !strings.Contains(err.Error(), "destination holds 3 values") {
		t.Errorf("short destination: %v", err)
	}
	rd.Close()
	if err := rd.ReadFloat32(make([]float32, 3*70000), "a"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("read after Close: %v", err)
	}
	if err := rd.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// sameBits is testutil.SameBits, which this package's tests cannot import
// (testutil imports safetensors).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// OpenReader refuses what Open refuses, with the same message, reading
// the header only.
func TestOpenReaderErrors(t *testing.T) {
	tensor := `{"dtype":"F32","shape":[768,2304],"data_offsets":[0,100]}`
	dir := t.TempDir()
	for name, buf := range map[string][]byte{
		"empty":           nil,
		"short":           {1, 2},
		"huge header":     le(uint64(MaxHeaderSize + 1)),
		"header past end": append(le(uint64(10)), "{}"...),
		"bad json":        handFile(`{"t":{dtype}}`, nil),
		"size mismatch":   handFile(`{"t":`+tensor+`}`, make([]byte, 100)),
		"trailing bytes":  handFile(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 6)),
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		_, ferr := Open(p)
		_, rerr := OpenReader(p)
		if ferr == nil || rerr == nil || ferr.Error() != rerr.Error() {
			t.Errorf("%s: Open error %v, OpenReader error %v", name, ferr, rerr)
		}
	}
	if _, err := OpenReader(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenReader(dir) error = %v", err)
	}
	// A file truncated after it was opened: a read error, not a panic.
	p := filepath.Join(dir, "ok")
	if err := WriteFile(p, []Tensor{{Name: "x", DType: F32, Shape: []int{4}, Data: make([]byte, 16)}}, nil); err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	fi, _ := os.Stat(p)
	os.Truncate(p, fi.Size()-4)
	if err := rd.ReadFloat32(make([]float32, 4), "x"); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("truncated file: %v", err)
	}
}
