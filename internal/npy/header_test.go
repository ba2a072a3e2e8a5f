package npy

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// npyBytes assembles a .npy preamble and header by hand.
func npyBytes(major byte, header string) []byte {
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(header)))
	}
	return append(b, header...)
}

// numpy124Int64x2x3 is the header numpy 1.24 writes for an int64 array of
// shape (2, 3), spelled out: the dict, 20 spaces of room for the growth
// axis (21 digits less the 1 of "2"), 38 spaces of padding and a newline,
// 128 bytes with the 10-byte preamble.
var numpy124Int64x2x3 = npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }"+
	strings.Repeat(" ", 20)+strings.Repeat(" ", 38)+"\n")

func TestParseHeaderNumpy(t *testing.T) {
	if len(numpy124Int64x2x3) != 128 {
		t.Fatalf("hand-made header is %d bytes, want 128", len(numpy124Int64x2x3))
	}
	data := append(bytes.Clone(numpy124Int64x2x3), make([]byte, 48)...)
	r := bytes.NewReader(data)
	h, err := ParseHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Descr: "<i8", Shape: []int{2, 3}, DataOffset: 128}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("ParseHeader = %+v, want %+v", h, want)
	}
	if h.NumElements() != 6 {
		t.Errorf("NumElements() = %d, want 6", h.NumElements())
	}
	if r.Len() != 48 {
		t.Errorf("ParseHeader left %d bytes unread, want the 48 data bytes", r.Len())
	}
	got, err := encodeHeader("<i8", false, []int{2, 3})
	if err != nil || !bytes.Equal(got, numpy124Int64x2x3) {
		t.Errorf("encodeHeader(<i8, (2, 3)) =\n%q, %v\nwant\n%q", got, err, numpy124Int64x2x3)
	}
}

func TestParseHeaderVariants(t *testing.T) {
	tests := []struct {
		name  string
		major byte
		dict  string
		want  Header // DataOffset filled in by the test
	}{
		{"numpy style", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (6, 16), }   \n", Header{Descr: "<i4", Shape: []int{6, 16}}},
		{"scalar", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", Header{Descr: "<f4", Shape: []int{}}},
		{"1-tuple", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }\n", Header{Descr: "|u1", Shape: []int{5}}},
		{"keys reordered", 1, "{'shape': (2, 3), 'fortran_order': True, 'descr': '<f8'}", Header{Descr: "<f8", FortranOrder: true, Shape: []int{2, 3}}},
		{"double quotes", 1, `{"descr": "<i8", "fortran_order": False, "shape": (1,)}`, Header{Descr: "<i8", Shape: []int{1}}},
		{"trailing comma in tuple", 1, "{'descr':'<i8','fortran_order':False,'shape':(2,3,),}", Header{Descr: "<i8", Shape: []int{2, 3}}},
		{"python 2 longs", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2L, 3L), }\n", Header{Descr: "<i8", Shape: []int{2, 3}}},
		{"whitespace everywhere", 1, " \n{ 'descr' :\t'<i8' ,\n 'fortran_order' : False , 'shape' : ( 4 , 0 , 1 ) }\n\n", Header{Descr: "<i8", Shape: []int{4, 0, 1}}},
		{"empty tuple with space", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': ( ), }", Header{Descr: "<i8", Shape: []int{}}},
		{"escaped quote", 1, `{'descr': 'a\'b', 'fortran_order': False, 'shape': ()}`, Header{Descr: "a'b", Shape: []int{}}},
		{"version 2", 2, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }\n", Header{Descr: "<i4", Shape: []int{2, 2}}},
		{"version 3 utf-8", 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), } é\n"[:56] + "}\n", Header{Descr: "<i4", Shape: []int{2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := npyBytes(tc.major, tc.dict)
			h, err := ParseHeader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			tc.want.DataOffset = int64(len(b))
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("ParseHeader(%q) = %+v, want %+v", tc.dict, h, tc.want)
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	dict := func(shape string) string {
		return "{'descr': '<i8', 'fortran_order': False, 'shape': " + shape + ", }\n"
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty file, not a .npy file"},
		{"short preamble", []byte("\x93NUM"), "truncated preamble"},
		{"bad magic", []byte("PK\x03\x04\x00\x00\x00\x00\x00\x00"), `not a .npy file (starts with "PK\x03\x04\x00\x00"`},
		{"version 1.1", []byte("\x93NUMPY\x01\x01\x00\x00"), "unsupported format version 1.1"},
		{"version 4.0", []byte("\x93NUMPY\x04\x00\x00\x00\x00\x00"), "unsupported format version 4.0"},
		{"truncated length", []byte("\x93NUMPY\x01\x00\x05"), "truncated header length"},
		{"truncated length v2", []byte("\x93NUMPY\x02\x00\x05\x00"), "truncated header length"},
		{"truncated header", npyBytes(1, dict("(2, 3)"))[:30], "truncated header: want 60 bytes, got 20"},
		{"header too large", []byte("\x93NUMPY\x02\x00\x00\x00\x00\x01"), "header length 16777216 exceeds the limit"},
		{"v3 not utf-8", npyBytes(3, "{'descr': '\xff'}"), "not valid UTF-8"},
		{"not a dict", npyBytes(1, "['descr']"), `expected '{' at byte 0, found '['`},
		{"empty header", npyBytes(1, ""), "expected '{' at byte 0, found end of header"},
		{"missing shape", npyBytes(1, "{'descr': '<i8', 'fortran_order': False}"), `missing key "shape"`},
		{"missing descr", npyBytes(1, "{'shape': (), 'fortran_order': False}"), `missing key "descr"`},
		{"duplicate key", npyBytes(1, "{'descr': '<i8', 'descr': '<i4'}"), `duplicate key "descr"`},
		{"unknown key", npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (), 'x': 1}"), `unexpected key "x"`},
		{"key not string", npyBytes(1, "{descr: '<i8'}"), "key: expected a string at byte 1"},
		{"structured descr", npyBytes(1, "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': ()}"), "structured dtypes are not supported"},
		{"descr not string", npyBytes(1, "{'descr': 5}"), "descr: expected a string"},
		{"fortran int", npyBytes(1, "{'descr': '<i8', 'fortran_order': 0, 'shape': ()}"), "fortran_order is 0, want True or False"},
		{"fortran lowercase", npyBytes(1, "{'descr': '<i8', 'fortran_order': false, 'shape': ()}"), "fortran_order is false, want True or False"},
		{"fortran missing", npyBytes(1, "{'descr': '<i8', 'fortran_order': , 'shape': ()}"), "fortran_order: expected True or False at byte 34, found ','"},
		{"shape list", npyBytes(1, dict("[2, 3]")), "shape is a list, want a tuple"},
		{"shape int", npyBytes(1, dict("5")), "shape: expected '(' at byte"},
		{"shape not tuple", npyBytes(1, dict("(5)")), "shape (5) is not a tuple (a 1-tuple needs a trailing comma)"},
		{"negative dim", npyBytes(1, dict("(2, -3)")), "negative dimension in shape"},
		{"float dim", npyBytes(1, dict("(2.5,)")), "shape: expected ',' or ')' at byte"},
		{"empty dim", npyBytes(1, dict("(2, , 3)")), "expected a dimension at byte"},
		{"huge dim", npyBytes(1, dict("(99999999999999999999,)")), "dimension 99999999999999999999 is too large"},
		{"overflow", npyBytes(1, dict("(4294967296, 4294967296)")), "shape (4294967296, 4294967296) has too many elements"},
		{"unterminated tuple", npyBytes(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3"), "expected ',' or ')' at byte"},
		{"unterminated string", npyBytes(1, "{'descr': '<i8"), "descr: unterminated string"},
		{"newline in string", npyBytes(1, "{'descr': '<i8\n'}"), "newline inside a string"},
		{"bad escape", npyBytes(1, `{'descr': '\x3c'}`), `unsupported escape \x`},
		{"missing comma", npyBytes(1, "{'descr': '<i8' 'fortran_order': False}"), "expected ',' or '}' at byte 16"},
		{"missing colon", npyBytes(1, "{'descr' '<i8'}"), "expected ':' at byte 9"},
		{"unclosed dict", npyBytes(1, "{'descr': '<i8', "), "key: expected a string at byte 17, found end of header"},
		{"trailing garbage", npyBytes(1, dict("()")[:len(dict("()"))-1]+"x\n"), "unexpected 'x' after the dict"},
		{"nul padding", npyBytes(1, dict("()")+"\x00"), `unexpected '\x00' after the dict`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader(bytes.NewReader(tc.b))
			if err == nil {
				t.Fatalf("ParseHeader = %+v, want error %q", h, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "npy: ") {
				t.Errorf("ParseHeader error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// encodeHeader follows numpy's layout for every version it picks: data
// aligned to 64 bytes, a whole 64 bytes of padding when already aligned,
// version 2.0 once the header outgrows a uint16 length.
func TestEncodeHeaderLayout(t *testing.T) {
	tests := []struct {
		name    string
		shape   []int
		fortran bool
		major   byte
	}{
		{"scalar", []int{}, false, 1},
		{"1-d", []int{5}, false, 1},
		{"21-digit axis", []int{1 << 62}, false, 1},
		{"fortran growth axis is last", []int{1, 1000}, true, 1},
		{"many dims", make([]int, 30000), false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeHeader("<f4", tc.fortran, tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			if len(b)%arrayAlign != 0 || b[6] != tc.major || b[len(b)-1] != '\n' {
				t.Errorf("header is %d bytes, version %d, last byte %q", len(b), b[6], b[len(b)-1])
			}
			h, err := ParseHeader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h.Shape, tc.shape) || h.FortranOrder != tc.fortran || h.DataOffset != int64(len(b)) {
				t.Errorf("round trip = %+v", h)
			}
		})
	}
}
