package npy

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The files in testdata/numpy were written by numpy 1.24.2 with
// testdata/gen_numpy.py, which says how to regenerate them.
func golden(name string) string { return filepath.Join("testdata", "numpy", name) }

func TestReadNumpyInt(t *testing.T) {
	seq := func(n int, f func(i int) int32) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	tests := []struct {
		file  string
		data  []int32
		shape []int
	}{
		{"i8_2x3.npy", []int32{-2, -1, 0, 1, 2, 3}, []int{2, 3}},
		{"i4_6x16.npy", seq(96, func(i int) int32 { return int32(i*1000 - 50257) }), []int{6, 16}},
		{"i4_scalar.npy", []int32{42}, []int{}},
		{"i4_empty.npy", []int32{}, []int{0, 128}},
		{"i2_3.npy", []int32{-32768, 0, 32767}, []int{3}},
		{"u2_3.npy", []int32{0, 50256, 65535}, []int{3}},
		{"u1_4.npy", []int32{0, 1, 128, 255}, []int{4}},
		{"i1_2.npy", []int32{-128, 127}, []int{2}},
		{"b1_3.npy", []int32{1, 0, 1}, []int{3}},
		{"i4_2x2_v2.npy", []int32{0, 1, 2, 3}, []int{2, 2}},
		{"i4_2x2_v3.npy", []int32{0, 1, 2, 3}, []int{2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, shape, err := ReadInt32(golden(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(data, tc.data) || !reflect.DeepEqual(shape, tc.shape) {
				t.Errorf("ReadInt32(%s) = %v %v, want %v %v", tc.file, data, shape, tc.data, tc.shape)
			}
		})
	}
}

func TestReadNumpyFloat(t *testing.T) {
	seq := make([]float32, 24)
	for i := range seq {
		seq[i] = float32(i) / 7
	}
	tests := []struct {
		file  string
		data  []float32
		shape []int
	}{
		{"f4_5.npy", []float32{0.5, -1.25, 3.0e-5, float32(math.Inf(1)), float32(math.Copysign(0, -1))}, []int{5}},
		{"f4_2x3x4.npy", seq, []int{2, 3, 4}},
		{"f2_2x2.npy", []float32{1, 0.099975586, 65504, -5.9604645e-08}, []int{2, 2}},
		{"f8_3.npy", []float32{0.1, float32(math.Inf(-1)), 2.5}, []int{3}},
		{"f4_aligned_header.npy", []float32{}, []int{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1e11}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, shape, err := ReadFloat32(golden(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(shape, tc.shape) || len(data) != len(tc.data) {
				t.Fatalf("ReadFloat32(%s) = %v %v, want %v %v", tc.file, data, shape, tc.data, tc.shape)
			}
			for i := range data {
				if math.Float32bits(data[i]) != math.Float32bits(tc.data[i]) {
					t.Errorf("ReadFloat32(%s)[%d] = %g, want %g", tc.file, i, data[i], tc.data[i])
				}
			}
		})
	}
}

// The writers produce numpy's bytes exactly.
func TestWriteMatchesNumpy(t *testing.T) {
	dir := t.TempDir()
	seqF := make([]float32, 24)
	for i := range seqF {
		seqF[i] = float32(i) / 7
	}
	seqI := make([]int32, 96)
	for i := range seqI {
		seqI[i] = int32(i*1000 - 50257)
	}
	tests := []struct {
		file  string
		write func(path string) error
	}{
		{"i8_2x3.npy", func(p string) error { return WriteInt64(p, []int64{-2, -1, 0, 1, 2, 3}, []int{2, 3}) }},
		{"i4_6x16.npy", func(p string) error { return WriteInt32(p, seqI, []int{6, 16}) }},
		{"i4_scalar.npy", func(p string) error { return WriteInt32(p, []int32{42}, []int{}) }},
		{"i4_empty.npy", func(p string) error { return WriteInt32(p, nil, []int{0, 128}) }},
		{"i8_big.npy", func(p string) error { return WriteInt64(p, []int64{1, 1 << 31}, []int{2}) }},
		{"f4_5.npy", func(p string) error {
			return WriteFloat32(p, []float32{0.5, -1.25, 3.0e-5, float32(math.Inf(1)), float32(math.Copysign(0, -1))}, []int{5})
		}},
		{"f4_2x3x4.npy", func(p string) error { return WriteFloat32(p, seqF, []int{2, 3, 4}) }},
		{"f4_aligned_header.npy", func(p string) error { return WriteFloat32(p, nil, []int{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1e11}) }},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(golden(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wrote\n%q\nnumpy wrote\n%q", got, want)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	i8, err := os.ReadFile(golden("i8_2x3.npy"))
	if err != nil {
		t.Fatal(err)
	}
	u4Big := append(npyBytes(1, "{'descr': '<u4', 'fortran_order': False, 'shape': (2,), }\n"), 1, 0, 0, 0, 0, 0, 0, 0x80)
	u8Big := append(npyBytes(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }\n"), 0, 0, 0, 0, 0, 0, 0, 0x80)
	tests := []struct {
		name string
		path string
		read func(string) error
		want string
	}{
		{"missing", filepath.Join(dir, "nope.npy"), readInt, "no such file"},
		{"fortran", golden("f4_fortran.npy"), readFloat, "fortran_order is True; only C-order arrays are supported"},
		{"big-endian", golden("i4_bigendian.npy"), readInt, `big-endian dtype ">i4" is not supported`},
		{"complex", golden("c8_2.npy"), readFloat, `unsupported dtype "<c8"; want '<f4', '<f2' or '<f8'`},
		{"float as int", golden("f4_5.npy"), readInt, `dtype "<f4" is not supported here; want an integer dtype`},
		{"int as float", golden("i8_2x3.npy"), readFloat, `dtype "<i8" is not supported here`},
		{"i8 out of range", golden("i8_big.npy"), readInt, "element 1 (2147483648) does not fit in int32"},
		{"u4 out of range", put("u4.npy", u4Big), readInt, "element 1 (2147483648) does not fit in int32"},
		{"u8 out of range", put("u8.npy", u8Big), readInt, "element 0 (9223372036854775808) does not fit in int32"},
		{"truncated data", put("trunc.npy", i8[:len(i8)-5]), readInt, "truncated: shape (2, 3) of <i8 needs 48 data bytes, file has 43"},
		{"header only", put("hdr.npy", i8[:128]), readInt, "truncated: shape (2, 3) of <i8 needs 48 data bytes, file has 0"},
		{"trailing data", put("long.npy", append(bytes.Clone(i8), 0)), readInt, "shape (2, 3) of <i8 needs 48 data bytes, file has 49"},
		{"truncated header", put("th.npy", i8[:50]), readInt, "truncated header: want 118 bytes, got 40"},
		{"not npy", put("x.safetensors", []byte("\x08\x00\x00\x00\x00\x00\x00\x00{}      ")), readFloat, "not a .npy file"},
		{"native order", put("native.npy", npyBytes(1, "{'descr': '=i4', 'fortran_order': False, 'shape': (), }")), readInt, "native byte order"},
		{"bar order", put("bar.npy", npyBytes(1, "{'descr': '|i4', 'fortran_order': False, 'shape': (), }")), readInt, "byte order '|' is only valid for 1-byte types"},
		{"odd size", put("i3.npy", npyBytes(1, "{'descr': '<i3', 'fortran_order': False, 'shape': (), }")), readInt, `unsupported dtype "<i3"`},
		{"object", put("obj.npy", npyBytes(1, "{'descr': '|O', 'fortran_order': False, 'shape': (), }")), readInt, `unsupported dtype "|O"`},
		{"string", put("str.npy", npyBytes(1, "{'descr': '<U10', 'fortran_order': False, 'shape': (), }")), readInt, `unsupported dtype "<U10"`},
		{"overflow", put("of.npy", npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2305843009213693952,), }")), readInt, "of <i8 overflows"},
		{"directory", dir, readInt, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) || !strings.HasPrefix(err.Error(), "npy: ") {
				t.Errorf("read %s: error = %v, want the path and %q", tc.path, err, tc.want)
			}
		})
	}
}

func readInt(p string) error   { _, _, err := ReadInt32(p); return err }
func readFloat(p string) error { _, _, err := ReadFloat32(p); return err }

// Seeded random data of several sizes (spanning read chunks) round-trips.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	for _, shape := range [][]int{{}, {0}, {1}, {3, 5}, {200, 128}, {2, 3, 4, 5}, {70000}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		i32, i64, f32 := make([]int32, n), make([]int64, n), make([]float32, n)
		for i := range n {
			i32[i] = int32(r.Uint32())
			i64[i] = int64(i32[i]) // in int32 range, so ReadInt32 can read it back
			f32[i] = float32(r.NormFloat64())
		}
		path := filepath.Join(dir, "a.npy")
		if err := WriteInt32(path, i32, shape); err != nil {
			t.Fatal(err)
		}
		if got, s, err := ReadInt32(path); err != nil || !reflect.DeepEqual(got, i32) || !reflect.DeepEqual(s, shape) {
			t.Errorf("int32 %v: got shape %v, err %v", shape, s, err)
		}
		if err := WriteInt64(path, i64, shape); err != nil {
			t.Fatal(err)
		}
		if got, s, err := ReadInt32(path); err != nil || !reflect.DeepEqual(got, i32) || !reflect.DeepEqual(s, shape) {
			t.Errorf("int64 %v: got shape %v, err %v", shape, s, err)
		}
		if err := WriteFloat32(path, f32, shape); err != nil {
			t.Fatal(err)
		}
		if got, s, err := ReadFloat32(path); err != nil || !reflect.DeepEqual(got, f32) || !reflect.DeepEqual(s, shape) {
			t.Errorf("float32 %v: got shape %v, err %v", shape, s, err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o044 == 0 && fi.Mode().Perm() != 0o600 {
			t.Errorf("permissions %v, %v", fi.Mode(), err)
		}
	}
	assertDir(t, dir, "a.npy")
}

// assertDir checks that dir holds exactly the named files.
func assertDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if names == nil {
		names = []string{}
	}
	if !reflect.DeepEqual(got, names) {
		t.Errorf("directory holds %q, want %q", got, names)
	}
}

// A rejected write leaves an existing file as it was and no temporary file.
func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.npy")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		write func() error
		want  string
	}{
		{"count mismatch", func() error { return WriteInt32(path, make([]int32, 5), []int{2, 3}) }, "shape (2, 3) holds 6 elements, data has 5"},
		{"negative dim", func() error { return WriteInt64(path, nil, []int{-1}) }, "negative dimension"},
		{"overflow", func() error { return WriteFloat32(path, nil, []int{1 << 40, 1 << 40}) }, "shape (1099511627776, 1099511627776) has too many elements"},
		{"scalar needs one", func() error { return WriteFloat32(path, nil, nil) }, "shape () holds 1 elements, data has 0"},
		{"missing dir", func() error { return WriteInt32(filepath.Join(dir, "no", "x.npy"), nil, []int{0}) }, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "npy: write ") {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("destination = %q, want it untouched", got)
	}
	assertDir(t, dir, "tokens.npy")
	// A successful write replaces it.
	if err := WriteInt32(path, []int32{1}, []int{1}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := ReadInt32(path); err != nil || !reflect.DeepEqual(got, []int32{1}) {
		t.Errorf("ReadInt32 = %v, %v", got, err)
	}
	assertDir(t, dir, "tokens.npy")
}

// The element-by-element encoding used on big-endian hosts gives the same
// bytes as numpy too.
func TestWriteEncodedPath(t *testing.T) {
	dir := t.TempDir()
	check := func(name string, write func(f *os.File) error) {
		t.Helper()
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := write(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, _ := os.ReadFile(f.Name())
		want, _ := os.ReadFile(golden(name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoded path wrote %q, want %q", name, got, want)
		}
	}
	check("i8_2x3.npy", func(f *os.File) error {
		h, _ := encodeHeader("<i8", false, []int{2, 3})
		return writeTo(f, h, []int64{-2, -1, 0, 1, 2, 3}, putInt64, false)
	})
	check("f4_5.npy", func(f *os.File) error {
		h, _ := encodeHeader("<f4", false, []int{5})
		return writeTo(f, h, []float32{0.5, -1.25, 3.0e-5, float32(math.Inf(1)), float32(math.Copysign(0, -1))}, putFloat32, false)
	})
	check("i4_scalar.npy", func(f *os.File) error {
		h, _ := encodeHeader("<i4", false, []int{})
		return writeTo(f, h, []int32{42}, putInt32, false)
	})
}
