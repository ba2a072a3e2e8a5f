package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"testing"
)

// pb writes pickle opcodes by hand, for files torch would never write.
type pb struct{ bytes.Buffer }

func (p *pb) op(b ...byte) *pb { p.Write(b); return p }

func (p *pb) proto(v byte) *pb { return p.op(0x80, v) }
func (p *pb) mark() *pb        { return p.op('(') }
func (p *pb) stop() *pb        { return p.op('.') }
func (p *pb) tuple() *pb       { return p.op('t') }
func (p *pb) reduce() *pb      { return p.op('R') }
func (p *pb) none() *pb        { return p.op('N') }

func (p *pb) global(module, name string) *pb {
	p.WriteByte('c')
	p.WriteString(module + "\n" + name + "\n")
	return p
}

func (p *pb) str(s string) *pb {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

// int writes n as BININT when it fits in int32, else as an 8-byte LONG1.
func (p *pb) int(n int) *pb {
	if n >= -1<<31 && n < 1<<31 {
		p.WriteByte('J')
		binary.Write(&p.Buffer, binary.LittleEndian, int32(n))
		return p
	}
	p.op(0x8a, 8)
	binary.Write(&p.Buffer, binary.LittleEndian, int64(n))
	return p
}

func (p *pb) ints(ns []int) *pb {
	p.mark()
	for _, n := range ns {
		p.int(n)
	}
	return p.tuple()
}

func (p *pb) orderedDict() *pb {
	return p.global("collections", "OrderedDict").op(')').reduce()
}

// storage writes the persistent id ("storage", torch.<class>, key, location, numel[, view]).
func (p *pb) storage(class, key string, numel int, view func(*pb)) *pb {
	p.mark().str("storage").global("torch", class).str(key).str("cpu").int(numel)
	if view != nil {
		view(p)
	}
	return p.tuple().op('Q')
}

// tensor writes _rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict()).
func (p *pb) tensor(class, key string, numel, offset int, shape, stride []int) *pb {
	p.global("torch._utils", "_rebuild_tensor_v2").mark()
	p.storage(class, key, numel, nil)
	p.int(offset).ints(shape).ints(stride).op(0x89).orderedDict()
	return p.tuple().reduce()
}

// dictOf wraps items (each writing a key then a value) in a dict and STOP.
func dictOf(items ...func(*pb)) []byte {
	var p pb
	p.proto(2).op('}').mark()
	for _, it := range items {
		it(&p)
	}
	p.op('u').stop()
	return p.Bytes()
}

type record struct {
	name string
	data []byte
}

// zipFile writes a torch-style zip: <prefix>/data.pkl then the records, stored.
func zipFile(t testing.TB, prefix string, pkl []byte, recs ...record) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	all := append([]record{{"data.pkl", pkl}}, recs...)
	for _, r := range all {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: prefix + "/" + r.name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// legacyHeader is the magic number, protocol version and sys_info pickles.
func legacyHeader() []byte {
	var p pb
	p.proto(2).op(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).stop()
	p.proto(2).op('M', 0xe9, 0x03).stop()
	p.proto(2).op('}').mark().str("little_endian").op(0x88).op('u').stop()
	return p.Bytes()
}

type block struct {
	count int
	data  []byte
}

// legacyFile writes the legacy container around the object pickle obj.
func legacyFile(obj []byte, keys []string, blocks []block) []byte {
	var out bytes.Buffer
	out.Write(legacyHeader())
	out.Write(obj)
	var p pb
	p.proto(2).op(']').mark()
	for _, k := range keys {
		p.str(k)
	}
	p.op('e').stop()
	out.Write(p.Bytes())
	for _, b := range blocks {
		binary.Write(&out, binary.LittleEndian, uint64(b.count))
		out.Write(b.data)
	}
	return out.Bytes()
}

func f32bytes(vals ...float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, vals)
	return b.Bytes()
}
