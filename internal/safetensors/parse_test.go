package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// handFile assembles a safetensors file from a header and data, independent
// of the writer.
func handFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// le encodes values little-endian, independent of the package's encoders.
func le(vals ...any) []byte {
	var b bytes.Buffer
	for _, v := range vals {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

// A file built byte by byte as Python's safetensors writes it (metadata
// first, tensors in any order in the header, header padded with spaces).
func TestParseHandMade(t *testing.T) {
	header := `{"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[3],"data_offsets":[16,40]},` +
		`"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"c":{"dtype":"F16","shape":[],"data_offsets":[40,42]},` +
		`"e":{"dtype":"BF16","shape":[0,3],"data_offsets":[42,42]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	data := le([]float32{1, -2, 0.5, 3e-5}, []int64{7, -1, 1 << 40}, uint16(0x3c00))
	buf := handFile(header, data)

	f, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := []TensorInfo{
		{Name: "a", DType: F32, Shape: []int{2, 2}, Begin: 0, End: 16},
		{Name: "b", DType: I64, Shape: []int{3}, Begin: 16, End: 40},
		{Name: "c", DType: F16, Shape: []int{}, Begin: 40, End: 42},
		{Name: "e", DType: BF16, Shape: []int{0, 3}, Begin: 42, End: 42},
	}
	if got := f.Tensors(); !reflect.DeepEqual(got, want) {
		t.Errorf("Tensors() = %+v, want %+v", got, want)
	}
	if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt"}) {
		t.Errorf("Metadata() = %v", got)
	}
	if ti, ok := f.Tensor("b"); !ok || !reflect.DeepEqual(ti, want[1]) {
		t.Errorf("Tensor(b) = %+v, %v", ti, ok)
	}
	if _, ok := f.Tensor("zz"); ok {
		t.Errorf("Tensor(zz) found")
	}
	a, err := f.Float32("a")
	if err != nil || !reflect.DeepEqual(a, []float32{1, -2, 0.5, 3e-5}) {
		t.Errorf("Float32(a) = %v, %v", a, err)
	}
	b64, err := f.Int64("b")
	if err != nil || !reflect.DeepEqual(b64, []int64{7, -1, 1 << 40}) {
		t.Errorf("Int64(b) = %v, %v", b64, err)
	}
	if _, err := f.Int32("b"); err == nil || !strings.Contains(err.Error(), `element 2 (1099511627776) does not fit in int32`) {
		t.Errorf("Int32(b) error = %v", err)
	}
	c, err := f.Float32("c")
	if err != nil || !reflect.DeepEqual(c, []float32{1}) {
		t.Errorf("Float32(c) = %v, %v", c, err)
	}
	e, err := f.Float32("e")
	if err != nil || len(e) != 0 {
		t.Errorf("Float32(e) = %v, %v", e, err)
	}

	// Raw is a view into buf, not a copy, with its capacity clipped.
	raw, err := f.Raw("b")
	if err != nil {
		t.Fatal(err)
	}
	start := 8 + len(header) + 16
	if !bytes.Equal(raw, buf[start:start+24]) || unsafe.SliceData(raw) != &buf[start] || cap(raw) != 24 {
		t.Errorf("Raw(b) is not the 24-byte view at offset %d", start)
	}
	if f.Path() != "" {
		t.Errorf("Path() = %q for a parsed buffer", f.Path())
	}
	// Callers may modify what accessors return without affecting the File.
	f.Tensors()[0].Shape[0] = 99
	f.Metadata()["format"] = "x"
	if ti, _ := f.Tensor("a"); ti.Shape[0] != 2 || f.Metadata()["format"] != "pt" {
		t.Errorf("accessors leak internal state")
	}
}

func TestIntConversions(t *testing.T) {
	header := `{"i8":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"u8":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},` +
		`"i16":{"dtype":"I16","shape":[1],"data_offsets":[4,6]},"u16":{"dtype":"U16","shape":[1],"data_offsets":[6,8]},` +
		`"i32":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},"u32":{"dtype":"U32","shape":[1],"data_offsets":[16,20]},` +
		`"bool":{"dtype":"BOOL","shape":[4],"data_offsets":[20,24]},"u64":{"dtype":"U64","shape":[1],"data_offsets":[24,32]},` +
		`"f64":{"dtype":"F64","shape":[1],"data_offsets":[32,40]}}`
	data := le([]int8{-3, 4}, []uint8{250, 1}, int16(-300), uint16(65000), []int32{-7, 1 << 30},
		uint32(1<<31), []uint8{1, 0, 1, 1}, uint64(1<<63), 0.1)
	f, err := Parse(handFile(header, data))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want32  []int32 // nil: error expected
		want64  []int64 // nil: error expected
		wantF32 []float32
	}{
		{"i8", []int32{-3, 4}, []int64{-3, 4}, nil},
		{"u8", []int32{250, 1}, []int64{250, 1}, nil},
		{"i16", []int32{-300}, []int64{-300}, nil},
		{"u16", []int32{65000}, []int64{65000}, nil},
		{"i32", []int32{-7, 1 << 30}, []int64{-7, 1 << 30}, nil},
		{"u32", nil, []int64{1 << 31}, nil},
		{"bool", []int32{1, 0, 1, 1}, []int64{1, 0, 1, 1}, nil},
		{"u64", nil, nil, nil},
		{"f64", nil, nil, []float32{0.1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got32, err := f.Int32(tc.name)
			if (err == nil) != (tc.want32 != nil) || !reflect.DeepEqual(got32, tc.want32) {
				t.Errorf("Int32(%s) = %v, %v, want %v", tc.name, got32, err, tc.want32)
			}
			got64, err := f.Int64(tc.name)
			if (err == nil) != (tc.want64 != nil) || !reflect.DeepEqual(got64, tc.want64) {
				t.Errorf("Int64(%s) = %v, %v, want %v", tc.name, got64, err, tc.want64)
			}
			gotF, err := f.Float32(tc.name)
			if (err == nil) != (tc.wantF32 != nil) || !reflect.DeepEqual(gotF, tc.wantF32) {
				t.Errorf("Float32(%s) = %v, %v, want %v", tc.name, gotF, err, tc.wantF32)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tensor := func(dt, shape, offsets string) string {
		return `{"dtype":"` + dt + `","shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	one := func(entry string) string { return `{"t":` + entry + `}` }
	tests := []struct {
		name string
		buf  []byte
		want string
	}{
		{"empty", nil, "file is 0 bytes, too short"},
		{"short", []byte{1, 2, 3}, "file is 3 bytes, too short"},
		{"header too large", le(uint64(MaxHeaderSize + 1)), "header length 100000001 exceeds the limit of 100000000 bytes (not a safetensors file?)"},
		{"header length past end", append(le(uint64(10)), "{}"...), "header length 10 exceeds the 2 bytes that follow it"},
		{"huge header length", le(^uint64(0)), "exceeds the limit"},
		{"zero header", le(uint64(0)), "header: truncated JSON"},
		{"not utf8", handFile("{\"\xff\":1}", nil), "not valid UTF-8"},
		{"array", handFile(`[1,2]`, nil), `header is not a JSON object (starts with "[")`},
		{"number", handFile(`42`, nil), "header is not a JSON object (starts with 42)"},
		{"null", handFile(`null`, nil), "header is not a JSON object (starts with null)"},
		{"truncated json", handFile(`{"t":{"dtype":"F32"`, nil), "truncated JSON"},
		{"bad json", handFile(`{"t":{dtype}}`, nil), "invalid character"},
		{"trailing garbage", handFile(`{}x`, nil), "header: after the object: invalid character 'x'"},
		{"second object", handFile(`{} {}`, nil), `header: unexpected "{" after the object`},
		{"duplicate", handFile(`{"t":`+tensor("F32", "[0]", "[0,0]")+`,"t":`+tensor("F32", "[0]", "[0,0]")+`}`, nil), `duplicate entry "t"`},
		{"entry not object", handFile(one(`[1]`), nil), `tensor "t": entry is [1], not an object`},
		{"entry null", handFile(one(`null`), nil), `tensor "t": entry is null, not an object`},
		{"missing dtype", handFile(one(`{"shape":[],"data_offsets":[0,4]}`), make([]byte, 4)), `tensor "t": missing "dtype"`},
		{"missing shape", handFile(one(`{"dtype":"F32","data_offsets":[0,4]}`), make([]byte, 4)), `missing "shape"`},
		{"missing offsets", handFile(one(`{"dtype":"F32","shape":[]}`), make([]byte, 4)), `missing "data_offsets"`},
		{"null shape", handFile(one(tensor("F32", "null", "[0,4]")), make([]byte, 4)), `"shape" is null`},
		{"unknown dtype", handFile(one(tensor("F128", "[1]", "[0,16]")), make([]byte, 16)), `tensor "t": unknown dtype "F128"`},
		{"dtype not string", handFile(one(`{"dtype":4,"shape":[1],"data_offsets":[0,4]}`), make([]byte, 4)), `bad "dtype" 4`},
		{"negative dim", handFile(one(tensor("F32", "[-1]", "[0,4]")), make([]byte, 4)), "shape [-1] has an invalid dimension -1"},
		{"fractional dim", handFile(one(tensor("F32", "[1.5]", "[0,4]")), make([]byte, 4)), `bad "shape" [1.5]`},
		{"huge dim", handFile(one(tensor("F32", "[1e30]", "[0,4]")), make([]byte, 4)), `bad "shape"`},
		{"shape not array", handFile(one(tensor("F32", "4", "[0,4]")), make([]byte, 4)), `bad "shape" 4`},
		{"three offsets", handFile(one(tensor("F32", "[1]", "[0,4,8]")), make([]byte, 8)), "data_offsets [0 4 8] must hold two numbers"},
		{"reversed offsets", handFile(one(tensor("F32", "[1]", "[4,0]")), make([]byte, 4)), "data_offsets [4, 0] are not an interval"},
		{"negative offset", handFile(one(tensor("F32", "[1]", "[-4,0]")), make([]byte, 4)), "data_offsets [-4, 0] are not an interval"},
		{"offsets past end", handFile(one(tensor("F32", "[2]", "[0,8]")), make([]byte, 4)), "data_offsets [0, 8] run past the 4-byte data section"},
		{"size mismatch", handFile(one(tensor("F32", "[768,2304]", "[0,100]")), make([]byte, 100)),
			`tensor "t": data_offsets [0, 100] do not match shape [768 2304] × F32 (7077888 bytes)`},
		{"overflow", handFile(one(tensor("F32", "[4294967296,4294967296]", "[0,0]")), nil), "shape [4294967296 4294967296] × F32 overflows"},
		{"overflow by size", handFile(one(tensor("F64", "[2305843009213693952]", "[0,0]")), nil), "overflows"},
		{"overlap", handFile(`{"a":`+tensor("F32", "[2]", "[0,8]")+`,"b":`+tensor("F32", "[1]", "[4,8]")+`}`, make([]byte, 8)),
			`tensor "b": data_offsets [4, 8] overlap tensor "a", which ends at 8`},
		{"gap", handFile(`{"a":`+tensor("F32", "[1]", "[0,4]")+`,"b":`+tensor("F32", "[1]", "[8,12]")+`}`, make([]byte, 12)),
			`tensor "b": data_offsets [8, 12] leave bytes [4, 8) of the data section unused`},
		{"leading gap", handFile(one(tensor("U8", "[1]", "[1,2]")), make([]byte, 2)), "leave bytes [0, 1)"},
		{"trailing bytes", handFile(one(tensor("F32", "[1]", "[0,4]")), make([]byte, 6)), "data section is 6 bytes but the tensors cover only 4"},
		{"data without tensors", handFile(`{}`, make([]byte, 3)), "data section is 3 bytes but the tensors cover only 0"},
		{"metadata not object", handFile(`{"__metadata__":[1]}`, nil), "__metadata__ must be an object mapping strings to strings"},
		{"metadata number", handFile(`{"__metadata__":{"a":1}}`, nil), `__metadata__: value of "a" is 1, not a string`},
		{"metadata nested", handFile(`{"__metadata__":{"a":{"b":"c"}}}`, nil), `value of "a" is {"b":"c"}, not a string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.buf)
			if err == nil {
				f.Close()
				t.Fatalf("Parse = nil error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "safetensors: ") {
				t.Errorf("Parse error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Accepted oddities: unknown entry fields, null metadata, leading
// whitespace, escaped names.
func TestParseLenient(t *testing.T) {
	header := ` {"__metadata__":null,"a\"b\u00e9":{"shape":[1],"dtype":"U8","data_offsets":[0,1],"extra":true}}   `
	f, err := Parse(handFile(header, []byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := f.Raw("a\"bé"); err != nil || !bytes.Equal(raw, []byte{9}) {
		t.Errorf("Raw = %v, %v", raw, err)
	}
	if len(f.Metadata()) != 0 {
		t.Errorf("Metadata() = %v, want empty", f.Metadata())
	}
}

func TestOpenErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	buf := handFile(`{"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[768,2304],"data_offsets":[0,100]}}`, make([]byte, 100))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	want := "safetensors: " + path + `: tensor "h.0.attn.c_attn.weight": data_offsets [0, 100] do not match shape [768 2304] × F32 (7077888 bytes)`
	if err == nil || err.Error() != want {
		t.Errorf("Open error = %v\nwant %s", err, want)
	}

	for name, content := range map[string][]byte{"empty": nil, "short": {1}} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(p); err == nil || !strings.Contains(err.Error(), p+": file is") {
			t.Errorf("Open(%s) error = %v", name, err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Open(missing) error = %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir) error = %v", err)
	}
}

func TestOpenAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	want := []float32{1, 2, 3}
	if err := WriteFile(path, []Tensor{{Name: "x", DType: F32, Shape: []int{3}, Data: Float32Bytes(nil, want)}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != path {
		t.Errorf("Path() = %q, want %q", f.Path(), path)
	}
	got, err := f.Float32("x")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Float32(x) = %v, %v", got, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := f.Raw("x"); err == nil || !strings.Contains(err.Error(), "file is closed") || !strings.Contains(err.Error(), path) {
		t.Errorf("Raw after Close error = %v", err)
	}
	if err := f.Float32Into(make([]float32, 3), "x"); err == nil {
		t.Errorf("Float32Into after Close succeeded")
	}
}

func TestAccessErrors(t *testing.T) {
	f, err := Parse(handFile(`{"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"f":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}`, make([]byte, 12)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"Raw missing", func() error { _, err := f.Raw("nope"); return err }, `safetensors: no tensor "nope"`},
		{"Float32 of I32", func() error { _, err := f.Float32("i"); return err }, `tensor "i": dtype I32 cannot be read as float32`},
		{"Int32 of F16", func() error { _, err := f.Int32("f"); return err }, `tensor "f": dtype F16 cannot be read as int32`},
		{"Int64 of F16", func() error { _, err := f.Int64("f"); return err }, `dtype F16 cannot be read as int64`},
		{"Float32Into short", func() error { return f.Float32Into(make([]float32, 1), "f") }, `tensor "f": destination holds 1 values, tensor has 2 (shape [2])`},
		{"Float32Into missing", func() error { return f.Float32Into(nil, "nope") }, `no tensor "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFloat32IntoNoAlloc(t *testing.T) {
	vals := make([]float32, 1000)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	header := `{"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]},"b":{"dtype":"BF16","shape":[1000],"data_offsets":[4000,6000]}}`
	data := le(vals, make([]uint16, 1000))
	f, err := Parse(handFile(header, data))
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 1000)
	for _, name := range []string{"a", "b"} {
		if n := testing.AllocsPerRun(10, func() {
			if err := f.Float32Into(dst, name); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Float32Into(%s) allocates %v times", name, n)
		}
	}
	if err := f.Float32Into(dst, "a"); err != nil || !reflect.DeepEqual(dst, vals) {
		t.Errorf("Float32Into(a) = %v", err)
	}
}

// The fast decoding paths agree bit for bit with the element-wise reference,
// NaN payloads included. F64 is left out: decodeFloat32 hands it to the
// reference itself.
func TestDecodeMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range []DType{F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			n := 1001
			b := make([]byte, n*dt.Size())
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			got, want := make([]float32, n), make([]float32, n)
			decodeFloat32(got, b, dt)
			decodeFloat32Naive(want, b, dt)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("decodeFloat32(%s)[%d] = %#x, want %#x", dt, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
		})
	}
}

func TestDTypeSize(t *testing.T) {
	tests := []struct {
		d    DType
		want int
	}{{F64, 8}, {F32, 4}, {F16, 2}, {BF16, 2}, {I64, 8}, {I32, 4}, {I16, 2}, {I8, 1}, {U8, 1}, {BOOL, 1},
		{U64, 8}, {U32, 4}, {U16, 2}, {F8E4M3, 1}, {F8E5M2, 1}, {"f32", 0}, {"", 0}}
	for _, tc := range tests {
		if got := tc.d.Size(); got != tc.want {
			t.Errorf("DType(%q).Size() = %d, want %d", tc.d, got, tc.want)
		}
	}
}
