package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixtureFiles(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.pt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in %s (%v)", fixtureDir, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// readAll reads every tensor reachable from v (bounded, as the graph may be
// a DAG with heavy sharing), so that bad views fail here if not at load.
func readAll(v any, budget *int) {
	*budget--
	if *budget < 0 {
		return
	}
	switch v := v.(type) {
	case *Tensor:
		if f, err := v.Float32(); err == nil {
			if n, err := v.float32Naive(); err != nil || len(n) != len(f) {
				panic("Float32 succeeded but float32Naive did not agree")
			}
		}
		v.Int64()
	case *Dict:
		for i := range v.Keys {
			readAll(v.Keys[i], budget)
			readAll(v.Values[i], budget)
		}
		if v.Attrs != nil {
			readAll(v.Attrs, budget)
		}
	case []any:
		for _, x := range v {
			readAll(x, budget)
		}
	case Tuple:
		for _, x := range v {
			readAll(x, budget)
		}
	case *Object:
		readAll(v.State, budget)
		for _, x := range v.Args {
			readAll(x, budget)
		}
	}
}

// TestTruncated cuts every fixture at every length: each prefix must fail
// cleanly (no panic, an error).
func TestTruncated(t *testing.T) {
	for name, data := range fixtureFiles(t) {
		t.Run(name, func(t *testing.T) {
			for n := 0; n < len(data); n++ {
				v, err := LoadBytes(data[:n])
				if err == nil {
					t.Errorf("LoadBytes(%s[:%d]) succeeded (%T), want an error", name, n, v)
				}
			}
		})
	}
}

// A zip-format file cut short (a download stopped early) says so, without
// the archive/zip error's doubled "zip: zip:" prefix.
func TestTruncatedZipSaysSo(t *testing.T) {
	data, err := os.ReadFile("../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt")
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadBytes(data[:len(data)/2])
	if err == nil || !strings.Contains(err.Error(), "truncated or corrupt") || strings.Contains(err.Error(), "zip: zip:") {
		t.Errorf("LoadBytes(half a torch.save zip) = %v", err)
	}
}

// TestCorrupted flips bytes at seeded random positions. Zip files may still
// load where a byte is outside every checked field, but nothing may panic,
// and a flip inside a CRC-checked record must be reported.
func TestCorrupted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, data := range fixtureFiles(t) {
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, len(data))
			for range 2000 {
				copy(buf, data)
				for range 1 + rng.IntN(3) {
					buf[rng.IntN(len(buf))] ^= byte(1 + rng.IntN(255))
				}
				if v, err := LoadBytes(buf); err == nil {
					budget := 10000
					readAll(v, &budget)
				}
			}
		})
	}
	t.Run("storage byte", func(t *testing.T) {
		data := bytes.Clone(fixtureFiles(t)["sparsity.pt"])
		i := bytes.Index(data, f32bytes(-10)) // first element of the tensor
		if i < 0 {
			t.Fatal("tensor bytes not found")
		}
		data[i] ^= 1
		if _, err := LoadBytes(data); err == nil || !strings.Contains(err.Error(), "CRC") {
			t.Errorf("LoadBytes with a flipped storage byte: error %v, want a CRC error", err)
		}
	})
}

// Crafted files: what torch never writes but a corrupt or hostile file may hold.
func TestCraftedErrors(t *testing.T) {
	floats := f32bytes(1, 2, 3, 4, 5, 6)
	zipWith := func(pkl []byte) []byte {
		return zipFile(t, "archive", pkl, record{"data/0", floats}, record{"version", []byte("3\n")})
	}
	tensorDict := func(numel, offset int, shape, stride []int) []byte {
		return dictOf(func(p *pb) { p.str("w").tensor("FloatStorage", "0", numel, offset, shape, stride) })
	}
	legacyObj := func(view func(*pb), offset int, shape, stride []int) []byte {
		var p pb
		p.proto(2).global("torch._utils", "_rebuild_tensor_v2").mark()
		p.mark().str("storage").global("torch", "FloatStorage").str("k").str("cpu").int(6)
		if view == nil {
			p.none()
		} else {
			view(&p)
		}
		p.tuple().op('Q').int(offset).ints(shape).ints(stride).op(0x89).orderedDict().tuple().reduce().stop()
		return p.Bytes()
	}
	viewMeta := func(key string, off, size int) func(*pb) {
		return func(p *pb) { p.mark().str(key).int(off).int(size).tuple() }
	}
	raw := func(b ...byte) []byte { return zipWith(b) }
	big := func(op byte, n uint64, width int) []byte {
		b := []byte{0x80, 2, op}
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], n)
		return raw(append(append(b, w[:width]...), '.')...)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"not torch", []byte("hello world"), "not a torch.save file"},
		{"zip without data.pkl", func() []byte {
			var b bytes.Buffer
			zw := zip.NewWriter(&b)
			w, _ := zw.Create("a/other.pkl")
			w.Write([]byte{0x80, 2, 'N', '.'})
			zw.Close()
			return b.Bytes()
		}(), "no <archive>/data.pkl record"},
		{"missing storage record", zipFile(t, "archive", tensorDict(6, 0, []int{6}, []int{1})), `no record archive/data/0`},
		{"record shorter than numel", zipWith(tensorDict(7, 0, []int{7}, []int{1})), "holds 24 bytes"},
		{"view past storage", zipWith(tensorDict(6, 2, []int{2, 3}, []int{3, 1})), "reaches element 7"},
		{"stride past storage", zipWith(tensorDict(6, 0, []int{2, 3}, []int{4, 1})), "reaches element"},
		{"negative offset", zipWith(tensorDict(6, -1, []int{2}, []int{1})), "negative storage offset"},
		{"negative shape", zipWith(tensorDict(6, 0, []int{-2}, []int{1})), "negative entry"},
		{"negative stride", zipWith(tensorDict(6, 5, []int{2}, []int{-1})), "negative entry"},
		{"rank mismatch", zipWith(tensorDict(6, 0, []int{2, 3}, []int{1})), "differ in length"},
		{"shape overflow", zipWith(tensorDict(6, 0, []int{1 << 40, 1 << 40}, []int{0, 0})), "element count overflows"},
		{"index overflow", zipWith(tensorDict(6, 0, []int{3, 2}, []int{1 << 62, 1})), "overflows"},
		{"huge expand", zipWith(tensorDict(6, 0, []int{1 << 20, 1 << 20}, []int{0, 0})), "expanded tensors"},
		{"huge numel", zipWith(tensorDict(1<<62, 0, []int{1}, []int{1})), "overflow"},
		{"storage dtype clash", zipWith(dictOf(
			func(p *pb) { p.str("a").tensor("FloatStorage", "0", 6, 0, []int{6}, []int{1}) },
			func(p *pb) { p.str("b").tensor("IntStorage", "0", 6, 0, []int{6}, []int{1}) })), "referenced as"},
		{"too few args", zipWith(dictOf(func(p *pb) {
			p.str("w").global("torch._utils", "_rebuild_tensor_v2").mark()
			p.storage("FloatStorage", "0", 6, nil).int(0).ints([]int{6}).ints([]int{1}).op(0x89).tuple().reduce()
		})), "got 5 arguments"},
		{"storage outside tensor", zipWith(dictOf(func(p *pb) { p.str("s").storage("FloatStorage", "0", 6, nil) })), "storage outside a tensor"},
		{"persistent id not storage", zipWith(dictOf(func(p *pb) { p.str("s").mark().str("module").tuple().op('Q') })), "nn.Module"},
		{"persistent id short", zipWith(dictOf(func(p *pb) { p.str("s").mark().str("storage").str("x").tuple().op('Q') })), "has 2 elements"},
		{"unknown storage class", zipWith(dictOf(func(p *pb) {
			p.str("s").mark().str("storage").global("torch", "ComplexFloatStorage").str("0").str("cpu").int(1).tuple().op('Q')
		})), `"torch.ComplexFloatStorage", which is not on the allow-list`},
		{"byteorder big", zipFile(t, "a", tensorDict(6, 0, []int{6}, []int{1}), record{"byteorder", []byte("big")}, record{"data/0", floats}), `byteorder "big"`},
		{"two data.pkl", func() []byte {
			return zipFile(t, "a", tensorDict(6, 0, []int{6}, []int{1}), record{"data/0", floats}, record{"b/data.pkl", nil})
		}(), "2 data.pkl records"},
		// The opcode pre-pass: nothing is allocated from these lengths.
		{"BINUNICODE 4 GiB", big('X', 0xffffffff, 4), "needs 4294967295 bytes"},
		{"BINBYTES8 huge", big(0x8e, 1<<62, 8), "needs 4611686018427387904 bytes"},
		{"BINUNICODE8 overflow", big(0x8d, 1<<63+5, 8), "needs"},
		{"FRAME huge", big(0x95, 1<<40, 8), "frame of 1099511627776 bytes"},
		{"LONG4 huge", big(0x8b, 1<<20, 4), "exceeds the 1024-byte limit"},
		{"LONG4 negative", big(0x8b, 0xffffffff, 4), "not positive"},
		{"LONG1 empty", raw(0x80, 2, 0x8a, 0, '.'), "zero-length long"},
		{"BINSTRING negative", big('T', 0x80000000, 4), "negative length"},
		{"unknown opcode", raw(0x80, 2, 0xff, '.'), "unknown opcode"},
		{"EXT1", raw(0x80, 2, 0x82, 1, '.'), "not supported"},
		{"no STOP", raw(0x80, 2, 'N'), "data ends before STOP"},
		{"memo never written", raw(0x80, 2, 'h', 7, '.'), "memo slot 7 was never written"},
		{"stack underflow", raw(0x80, 2, 'N', 'R', '.'), "needs 2 stack items"},
		{"no mark", raw(0x80, 2, 'N', 't', '.'), "no MARK"},
		{"odd SETITEMS", raw(0x80, 2, '}', '(', 'N', 'u', '.'), "odd number of items"},
		{"odd DICT", raw(0x80, 2, '(', 'N', 'd', '.'), "odd number of items"},
		{"deep marks", raw(append(append([]byte{0x80, 2}, bytes.Repeat([]byte{'('}, 5000)...), '.')...), "nested MARKs"},
		{"protocol 6", raw(0x80, 6, 'N', '.'), "unsupported protocol"},
		{"huge INT text", raw(append(append([]byte{0x80, 2, 'I'}, bytes.Repeat([]byte{'9'}, 5000)...), '\n', '.')...), "digit limit"},
		// Values gopickle builds that are not a sound object graph.
		{"cycle", raw(0x80, 2, ']', 'q', 0, 'h', 0, 'a', '.'), "reference cycle"},
		{"deep nesting", raw(append(append(append([]byte{0x80, 2}, bytes.Repeat([]byte{']'}, 2000)...), bytes.Repeat([]byte{'a'}, 1999)...), '.')...), "nested more than"},
		{"unhashable key", raw(append(append([]byte{0x80, 2}, []byte("ccollections\nOrderedDict\n)R")...), 'C', 1, 'x', 'N', 's', '.')...), "malformed data"},
		{"builtin object", raw(append([]byte{0x80, 2}, []byte("c__builtin__\nobject\n.")...)...), `"__builtin__.object"`},
		{"stack global", raw(0x80, 4, 0x8c, 2, 'o', 's', 0x8c, 6, 's', 'y', 's', 't', 'e', 'm', 0x93, '.'), `"os.system", which is not on the allow-list`},
		{"INST", raw(append([]byte{0x80, 2, '('}, []byte("ios\nsystem\n.")...)...), `"os.system"`},
		{"call a dtype", raw(append([]byte{0x80, 2}, []byte("ctorch\nfloat32\n)R.")...)...), "not callable"},
		{"bytes not latin1", raw(append([]byte{0x80, 2}, []byte("c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.")...)...), "not latin-1"},
		// Legacy container.
		{"legacy bad magic", append([]byte{0x80, 2, 'K', 1, '.'}, legacyHeader()[16:]...), "magic number 1"},
		{"legacy count mismatch", legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), []string{"k"}, []block{{5, floats}}), "5 elements in the data, 6 in its id"},
		{"legacy short data", legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), []string{"k"}, []block{{6, floats[:20]}}), "needs 24 bytes"},
		{"legacy key unlisted", legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), nil, nil), "missing from the key list"},
		{"legacy key unknown", legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), []string{"k", "z"}, []block{{6, floats}}), `"z" is listed but no tensor uses it`},
		{"legacy key twice", legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), []string{"k", "k"}, []block{{6, floats}, {6, floats}}), "listed twice"},
		{"legacy numel beyond file", legacyFile(func() []byte {
			var p pb
			p.proto(2).global("torch._utils", "_rebuild_tensor_v2").mark()
			p.mark().str("storage").global("torch", "FloatStorage").str("k").str("cpu").int(1 << 40).none().tuple().op('Q')
			p.int(0).ints([]int{1}).ints([]int{1}).op(0x89).orderedDict().tuple().reduce().stop()
			return p.Bytes()
		}(), nil, nil), "more than the"},
		{"legacy view outside storage", legacyFile(legacyObj(viewMeta("v", 4, 3), 0, []int{1}, []int{1}), []string{"k"}, []block{{6, floats}}), "outside storage"},
		{"legacy view negative", legacyFile(legacyObj(viewMeta("v", -1, 3), 0, []int{1}, []int{1}), []string{"k"}, []block{{6, floats}}), "outside storage"},
		{"legacy tensor outside view", legacyFile(legacyObj(viewMeta("v", 2, 3), 1, []int{3}, []int{1}), []string{"k"}, []block{{6, floats}}), "reaches element 3"},
		{"legacy bad view metadata", legacyFile(legacyObj(func(p *pb) { p.str("v") }, 0, []int{1}, []int{1}), []string{"k"}, []block{{6, floats}}), "not a 3-tuple"},
		{"legacy big endian", func() []byte {
			h := legacyHeader()
			i := bytes.Index(h, []byte("little_endian\x88"))
			h[i+len("little_endian")] = 0x89
			return append(h, legacyFile(legacyObj(nil, 0, []int{6}, []int{1}), []string{"k"}, []block{{6, floats}})[len(h):]...)
		}(), "big-endian"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBytes(tc.data)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadBytes(%s) error = %v, want one containing %q", tc.name, err, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "torchfile: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestCraftedOK covers what torch may write but our fixtures do not.
func TestCraftedOK(t *testing.T) {
	floats := f32bytes(1, 2, 3, 4, 5, 6)
	t.Run("rebuild_tensor_v2 with metadata", func(t *testing.T) {
		pkl := dictOf(func(p *pb) {
			p.str("w").global("torch._utils", "_rebuild_tensor_v2").mark()
			p.storage("FloatStorage", "0", 6, nil).int(1).ints([]int{2, 2}).ints([]int{1, 2}).op(0x89).orderedDict().op('}').tuple().reduce()
		})
		v, err := LoadBytes(zipFile(t, "x", pkl, record{"data/0", floats}))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := v.(*Dict).Get("w")
		got, err := w.(*Tensor).Float32()
		if err != nil || len(got) != 4 || got[0] != 2 || got[1] != 4 || got[2] != 3 || got[3] != 5 {
			t.Errorf("Float32() = %v, %v; want [2 4 3 5]", got, err)
		}
	})
	t.Run("rebuild_tensor_v3 on untyped storage", func(t *testing.T) {
		pkl := dictOf(func(p *pb) {
			p.str("w").global("torch._utils", "_rebuild_tensor_v3").mark()
			p.storage("UntypedStorage", "0", 24, nil).int(2).ints([]int{3}).ints([]int{1}).op(0x89).orderedDict()
			p.global("torch", "float32").tuple().reduce()
		})
		v, err := LoadBytes(zipFile(t, "x", pkl, record{"data/0", floats}))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := v.(*Dict).Get("w")
		got, err := w.(*Tensor).Float32()
		if err != nil || len(got) != 3 || got[0] != 3 || got[2] != 5 {
			t.Errorf("Float32() = %v, %v; want [3 4 5]", got, err)
		}
	})
	t.Run("allow extra class", func(t *testing.T) {
		pkl := append([]byte{0x80, 2}, []byte("cmy.mod\nThing\n)\x81}X\x01\x00\x00\x00aK\x07sb.")...)
		data := zipFile(t, "x", pkl)
		if _, err := LoadBytes(data); err == nil {
			t.Fatal("unlisted class loaded")
		}
		v, err := LoadOptions{AllowClasses: []string{"my.mod.Thing"}}.LoadBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := v.(*Object).Attr("a"); !ok || a != int64(7) {
			t.Errorf("Attr(a) = %v, %v; want 7", a, ok)
		}
	})
	t.Run("sets and BUILD", func(t *testing.T) {
		for _, tc := range []struct {
			name, pkl, want string
		}{
			{"set", "\x80\x04\x8f(K\x03K\x01K\x02\x90.", "builtins.set [[1 2 3]]"},
			{"frozenset", "\x80\x04(X\x01\x00\x00\x00bX\x01\x00\x00\x00a\x91.", "builtins.frozenset [[a b]]"},
			{"set protocol 2", "\x80\x02c__builtin__\nset\n](K\x02K\x01e\x85R.", "builtins.set [[2 1]]"},
		} {
			v, err := LoadBytes(zipFile(t, "x", []byte(tc.pkl)))
			o, ok := v.(*Object)
			if err != nil || !ok || fmt.Sprintf("%s.%s %v", o.Module, o.Name, o.Args) != tc.want {
				t.Errorf("%s: LoadBytes = %#v, %v; want %s", tc.name, v, err, tc.want)
			}
		}
		// Two BUILDs merge their dicts, as __dict__.update does.
		pkl := "\x80\x02cmy.mod\nThing\n)\x81}X\x01\x00\x00\x00aK\x01sb}X\x01\x00\x00\x00bK\x02sb."
		v, err := LoadOptions{AllowClasses: []string{"my.mod.Thing"}}.LoadBytes(zipFile(t, "x", []byte(pkl)))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := v.(*Object).Attr("a")
		b, _ := v.(*Object).Attr("b")
		if a != int64(1) || b != int64(2) {
			t.Errorf("after two BUILDs a, b = %v, %v; want 1, 2", a, b)
		}
	})
	t.Run("duplicate dict keys keep first position and last value", func(t *testing.T) {
		pkl := []byte("\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.")
		v, err := LoadBytes(zipFile(t, "x", pkl))
		if err != nil {
			t.Fatal(err)
		}
		d := v.(*Dict)
		if got, _ := d.Get("a"); len(d.Keys) != 2 || d.Keys[0] != "a" || got != int64(3) {
			t.Errorf("dict = %v %v, want [a b] with a=3", d.Keys, d.Values)
		}
	})
	t.Run("deflated record", func(t *testing.T) {
		// torch stores records, but a re-zipped file may deflate them.
		var p pb
		p.proto(2).str("hi").stop()
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: "x/data.pkl", Method: zip.Deflate})
		w.Write(p.Bytes())
		zw.Close()
		v, err := LoadBytes(b.Bytes())
		if err != nil || v != "hi" {
			t.Errorf("LoadBytes = %v, %v; want hi", v, err)
		}
	})
	t.Run("edited stride is rechecked", func(t *testing.T) {
		v, err := LoadBytes(zipFile(t, "x", dictOf(func(p *pb) { p.str("w").tensor("FloatStorage", "0", 6, 0, []int{6}, []int{1}) }), record{"data/0", floats}))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := v.(*Dict).Get("w")
		w.(*Tensor).Stride[0] = 2
		if _, err := w.(*Tensor).Float32(); err == nil {
			t.Error("Float32 after widening the stride past the storage succeeded")
		}
		var zero Tensor
		if _, err := zero.Float32(); err == nil {
			t.Error("Float32 of a zero Tensor succeeded")
		}
	})
}

func TestNotAllowedErrorAs(t *testing.T) {
	_, err := Load(filepath.Join(fixtureDir, "disallowed.pt"))
	var na *NotAllowedError
	if !errors.As(err, &na) || na.Module != "posix" || na.Name != "system" {
		t.Errorf("Load(disallowed.pt) = %v, want a *NotAllowedError for posix.system", err)
	}
	if _, err := Load(filepath.Join(fixtureDir, "no-such-file.pt")); err == nil || !strings.Contains(err.Error(), "no-such-file.pt") {
		t.Errorf("Load(missing) error = %v, want one naming the path", err)
	}
}
