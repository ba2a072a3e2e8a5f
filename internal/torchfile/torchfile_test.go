package torchfile

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Golden values: ../../testdata/torchfile/expected.json holds, for every
// fixture, what torch 1.13's torch.load(path, map_location="cpu") returned,
// encoded by testdata/gen/gen_torchfile.py (which also wrote the fixtures
// with the real torch.save; regenerate with
// `/usr/bin/python3 testdata/gen/gen_torchfile.py` from the repository root).
// Tensor values are compared bit for bit (tolerance 0): float32 is copied,
// float16/bfloat16 → float32 is exact, and float64/int → float32 rounds to
// nearest-even in both Go and torch's .float(). NaNs only need to be NaN.

const fixtureDir = "../../testdata/torchfile"

type expected struct {
	Torch string              `json:"torch"`
	Files map[string]expEntry `json:"files"`
}

type expEntry struct {
	Container string  `json:"container"`
	Location  string  `json:"location"`
	Error     string  `json:"error"`
	Value     *expVal `json:"value"`
}

type expVal struct {
	T            string          `json:"t"`
	V            json.RawMessage `json:"v"`
	Class        string          `json:"class"`
	Items        [][]*expVal     `json:"items"`
	Attrs        *expVal         `json:"attrs"`
	Module       string          `json:"module"`
	Name         string          `json:"name"`
	Args         []*expVal       `json:"args"`
	State        *expVal         `json:"state"`
	DType        string          `json:"dtype"`
	Shape        []int           `json:"shape"`
	Stride       []int           `json:"stride"`
	Offset       int             `json:"offset"`
	RequiresGrad bool            `json:"requires_grad"`
	Storage      int             `json:"storage"`
	F32          []uint32        `json:"f32"`
	I64          []string        `json:"i64"`
}

func loadExpected(t *testing.T) expected {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "expected.json"))
	if err != nil {
		t.Fatalf("read golden values: %v (regenerate with testdata/gen/gen_torchfile.py)", err)
	}
	var e expected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Files) == 0 {
		t.Fatal("expected.json lists no files")
	}
	return e
}

func TestGolden(t *testing.T) {
	exp := loadExpected(t)
	for name, want := range exp.Files {
		for _, mode := range []string{"mmap", "read", "bytes"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				path := filepath.Join(fixtureDir, name)
				var got any
				var err error
				switch mode {
				case "mmap":
					got, err = Load(path)
				case "read":
					got, err = LoadOptions{NoMmap: true}.Load(path)
				case "bytes":
					data, rerr := os.ReadFile(path)
					if rerr != nil {
						t.Fatal(rerr)
					}
					got, err = LoadBytes(data)
				}
				if want.Error != "" {
					if err == nil || !strings.Contains(err.Error(), want.Error) {
						t.Fatalf("Load(%s) error = %v, want one containing %q", name, err, want.Error)
					}
					var na *NotAllowedError
					if !errors.As(err, &na) {
						t.Errorf("Load(%s) error %v is not a *NotAllowedError", name, err)
					}
					if mode != "bytes" && !strings.Contains(err.Error(), path) {
						t.Errorf("Load(%s) error %q does not name the path", name, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Load(%s): %v", name, err)
				}
				c := comparer{t: t, location: want.Location, groups: map[int]*storageView{}, seen: map[*storageView]int{}}
				c.compare(name, got, want.Value)
			})
		}
	}
}

type comparer struct {
	t        *testing.T
	location string
	groups   map[int]*storageView // expected storage id → our view
	seen     map[*storageView]int
}

func (c *comparer) compare(path string, got any, want *expVal) {
	t := c.t
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	var v any
	if len(want.V) > 0 {
		if err := json.Unmarshal(want.V, &v); err != nil && want.T != "list" && want.T != "tuple" {
			t.Fatal(err)
		}
	}
	switch want.T {
	case "none":
		if got != nil {
			fail("got %#v, want None", got)
		}
	case "bool":
		if got != v {
			fail("got %#v, want %v", got, v)
		}
	case "int":
		var s string
		switch g := got.(type) {
		case int64:
			s = strconv.FormatInt(g, 10)
		case *big.Int:
			if g.IsInt64() {
				fail("in-range int %v returned as *big.Int", g)
			}
			s = g.String()
		default:
			fail("got %T, want int", got)
			return
		}
		if s != v {
			fail("got %s, want %s", s, v)
		}
	case "float":
		g, ok := got.(float64)
		w, err := strconv.ParseFloat(v.(string), 64)
		if !ok || err != nil {
			fail("got %T (%v), want float %v", got, err, v)
			return
		}
		if math.Float64bits(g) != math.Float64bits(w) && !(math.IsNaN(g) && math.IsNaN(w)) {
			fail("got %v, want %v", g, w)
		}
	case "str":
		if got != v {
			fail("got %#v, want %q", got, v)
		}
	case "bytes":
		g, ok := got.([]byte)
		if !ok || hex.EncodeToString(g) != v {
			fail("got %#v, want bytes %s", got, v)
		}
	case "list", "tuple":
		var items []*expVal
		if err := json.Unmarshal(want.V, &items); err != nil {
			t.Fatal(err)
		}
		var g []any
		if want.T == "list" {
			l, ok := got.([]any)
			if !ok {
				fail("got %T, want list", got)
				return
			}
			g = l
		} else {
			tu, ok := got.(Tuple)
			if !ok {
				fail("got %T, want tuple", got)
				return
			}
			g = tu
		}
		if len(g) != len(items) {
			fail("got %d items, want %d", len(g), len(items))
			return
		}
		for i := range items {
			c.compare(fmt.Sprintf("%s[%d]", path, i), g[i], items[i])
		}
	case "dict":
		d, ok := got.(*Dict)
		if !ok {
			fail("got %T, want %s", got, want.Class)
			return
		}
		if d.Class != want.Class {
			fail("class %q, want %q", d.Class, want.Class)
		}
		if len(d.Keys) != len(want.Items) || len(d.Values) != len(want.Items) {
			fail("got %d keys, want %d", len(d.Keys), len(want.Items))
			return
		}
		for i, kv := range want.Items {
			c.compare(fmt.Sprintf("%s.key[%d]", path, i), d.Keys[i], kv[0])
			sub := fmt.Sprintf("%s[%v]", path, d.Keys[i])
			c.compare(sub, d.Values[i], kv[1])
			if k, ok := d.Keys[i].(string); ok {
				if g, ok := d.Get(k); !ok || !sameValue(g, d.Values[i]) {
					fail("Get(%q) = %v, %v; want entry %d", k, g, ok, i)
				}
			}
		}
		switch {
		case want.Attrs == nil && d.Attrs != nil:
			fail("got attributes %v, want none", d.Attrs.Keys)
		case want.Attrs != nil:
			c.compare(path+".attrs", d.Attrs, want.Attrs)
		}
	case "global":
		if g, ok := got.(Global); !ok || g.Module != want.Module || g.Name != want.Name {
			fail("got %#v, want global %s.%s", got, want.Module, want.Name)
		}
	case "object":
		o, ok := got.(*Object)
		if !ok || o.Module != want.Module || o.Name != want.Name {
			fail("got %#v, want object %s.%s", got, want.Module, want.Name)
			return
		}
		if len(o.Args) != len(want.Args) {
			fail("got args %v, want %d", o.Args, len(want.Args))
			return
		}
		for i := range want.Args {
			c.compare(fmt.Sprintf("%s.args[%d]", path, i), o.Args[i], want.Args[i])
		}
		c.compare(path+".state", o.State, want.State)
	case "tensor":
		c.tensor(path, got, want)
	default:
		t.Fatalf("%s: unknown golden type %q", path, want.T)
	}
}

func sameValue(a, b any) bool {
	switch a.(type) {
	case []any, []byte, Tuple:
		return fmt.Sprintf("%p", a) == fmt.Sprintf("%p", b)
	}
	return a == b
}

func (c *comparer) tensor(path string, got any, want *expVal) {
	t := c.t
	t.Helper()
	x, ok := got.(*Tensor)
	if !ok {
		t.Errorf("%s: got %T, want tensor", path, got)
		return
	}
	if x.DType != want.DType || fmt.Sprint(x.Shape) != fmt.Sprint(want.Shape) ||
		fmt.Sprint(x.Stride) != fmt.Sprint(want.Stride) || x.Offset != want.Offset || x.RequiresGrad != want.RequiresGrad {
		t.Errorf("%s: got %s %v stride %v offset %d grad %v, want %s %v stride %v offset %d grad %v", path,
			x.DType, x.Shape, x.Stride, x.Offset, x.RequiresGrad, want.DType, want.Shape, want.Stride, want.Offset, want.RequiresGrad)
		return
	}
	if x.Location() != c.location {
		t.Errorf("%s: location %q, want %q", path, x.Location(), c.location)
	}
	if x.Numel() != len(want.F32) {
		t.Errorf("%s: Numel() = %d, want %d", path, x.Numel(), len(want.F32))
	}
	// Tensors torch reports on one storage must share ours, and only those.
	if g, ok := c.groups[want.Storage]; ok && g != x.storage {
		t.Errorf("%s: storage differs from other tensors on torch storage %d", path, want.Storage)
	}
	if id, ok := c.seen[x.storage]; ok && id != want.Storage {
		t.Errorf("%s: shares a storage with torch storage %d, want %d", path, id, want.Storage)
	}
	c.groups[want.Storage], c.seen[x.storage] = x.storage, want.Storage

	f, err := x.Float32()
	if err != nil {
		t.Errorf("%s: Float32: %v", path, err)
		return
	}
	naive, err := x.float32Naive()
	if err != nil {
		t.Fatalf("%s: float32Naive: %v", path, err)
	}
	if len(f) != len(want.F32) {
		t.Errorf("%s: Float32 gave %d values, want %d", path, len(f), len(want.F32))
		return
	}
	for i, w := range want.F32 {
		if !sameF32(f[i], math.Float32frombits(w)) {
			t.Errorf("%s: Float32()[%d] = %v (%#08x), want %v (%#08x)", path, i, f[i], math.Float32bits(f[i]), math.Float32frombits(w), w)
		}
		if !sameF32(naive[i], f[i]) {
			t.Errorf("%s: float32Naive()[%d] = %v, Float32 %v", path, i, naive[i], f[i])
		}
	}
	ints, err := x.Int64()
	if want.I64 == nil {
		if err == nil {
			t.Errorf("%s: Int64 of a %s tensor succeeded", path, x.DType)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: Int64: %v", path, err)
		return
	}
	for i, w := range want.I64 {
		if strconv.FormatInt(ints[i], 10) != w {
			t.Errorf("%s: Int64()[%d] = %d, want %s", path, i, ints[i], w)
		}
	}
}

func sameF32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

func TestStateDict(t *testing.T) {
	cases := []struct {
		file string
		keys string
	}{
		{"transcoder.pt", "[W_enc b_enc W_dec b_dec b_dec_out]"},
		{"transcoder_legacy.pt", "[W_enc b_enc W_dec b_dec b_dec_out]"},
		{"checkpoint.pt", "[weight bias]"},
		{"zip_dtypes.pt", "[f32 f16 bf16 f64 i64 i32 i16 i8 u8 bool]"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			obj, err := Load(filepath.Join(fixtureDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			sd, err := StateDict(obj)
			if err != nil {
				t.Fatalf("StateDict: %v", err)
			}
			if got := fmt.Sprint(sd.Keys); got != tc.keys {
				t.Errorf("StateDict keys = %s, want %s", got, tc.keys)
			}
		})
	}
	bad := []struct {
		name string
		obj  any
		want string
	}{
		{"tensor", &Tensor{}, "not a dict"},
		{"nil", nil, "not a dict"},
		{"no tensors", &Dict{Keys: []any{"a"}, Values: []any{int64(1)}}, "no tensor map"},
		{"state_dict not tensors", &Dict{Keys: []any{"state_dict"}, Values: []any{&Dict{Keys: []any{"x"}, Values: []any{"y"}}}}, `entry "state_dict"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := StateDict(tc.obj); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StateDict(%s) error = %v, want one containing %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestTranscoderConfig(t *testing.T) {
	for _, file := range []string{"transcoder.pt", "transcoder_legacy.pt"} {
		obj, err := Load(filepath.Join(fixtureDir, file))
		if err != nil {
			t.Fatal(err)
		}
		root := obj.(*Dict)
		v, _ := root.Get("cfg")
		cfg, ok := v.(*Object)
		if !ok {
			t.Fatalf("%s: cfg is %T", file, v)
		}
		checks := []struct {
			attr string
			want any
		}{
			{"hook_point", "blocks.8.ln2.hook_normalized"},
			{"d_in", int64(4)},
			{"d_sae", int64(8)},
			{"is_transcoder", true},
			{"dtype", Global{"torch", "float32"}},
			{"hook_point_head_index", nil},
		}
		for _, c := range checks {
			if got, ok := cfg.Attr(c.attr); !ok || got != c.want {
				t.Errorf("%s: cfg.Attr(%q) = %#v, %v; want %#v", file, c.attr, got, ok, c.want)
			}
		}
		dev, _ := cfg.Attr("device")
		if d, ok := dev.(*Object); !ok || d.Module != "torch" || d.Name != "device" || fmt.Sprint(d.Args) != "[cuda]" {
			t.Errorf("%s: cfg.device = %#v, want torch.device(\"cuda\")", file, dev)
		}
		if _, ok := cfg.Attr("missing"); ok {
			t.Errorf("%s: Attr(missing) found", file)
		}
		sd, _ := root.Get("state_dict")
		meta, ok := sd.(*Dict).Attrs.Get("_metadata")
		if !ok {
			t.Fatalf("%s: state dict has no _metadata", file)
		}
		if md := meta.(*Dict); md.Class != "collections.OrderedDict" || fmt.Sprint(md.Keys) != "[ hook_sae_in hook_hidden_post]" {
			t.Errorf("%s: _metadata = %s %v", file, md.Class, md.Keys)
		}
	}
}

func TestDictGet(t *testing.T) {
	d := &Dict{Keys: []any{"a", int64(1), "\x00b"}, Values: []any{1, 2, 3}} // no index: built by hand
	if v, ok := d.Get("\x00b"); !ok || v != 3 {
		t.Errorf("Get(\\x00b) = %v, %v; want 3, true", v, ok)
	}
	if _, ok := d.Get("1"); ok {
		t.Error(`Get("1") found the int key 1`)
	}
	var nilDict *Dict
	if _, ok := nilDict.Get("a"); ok || nilDict.Len() != 0 {
		t.Error("nil Dict is not empty")
	}
	// A loaded dict whose caller reordered Keys must not answer from a stale index.
	obj, err := Load(filepath.Join(fixtureDir, "checkpoint.pt"))
	if err != nil {
		t.Fatal(err)
	}
	root := obj.(*Dict)
	root.Keys[0], root.Keys[1] = root.Keys[1], root.Keys[0]
	root.Values[0], root.Values[1] = root.Values[1], root.Values[0]
	if v, ok := root.Get("epoch"); !ok || v != int64(3) {
		t.Errorf("Get(epoch) after reordering = %v, %v; want 3, true", v, ok)
	}
}
