package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"strings"
)

// loadZip reads the zip container: <prefix>/data.pkl is the pickle and
// <prefix>/data/<key> the raw little-endian bytes of storage <key>.
func (o LoadOptions) loadZip(data []byte, m *mapping) (any, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	switch {
	case errors.Is(err, zip.ErrFormat): // "zip: not a valid zip file"
		return nil, fmt.Errorf("it begins as a zip archive (torch.save's format) but has no readable zip directory at its end (%d bytes): the file is truncated or corrupt", len(data))
	case err != nil && !errors.Is(err, zip.ErrInsecurePath): // names are never used as paths here
		return nil, fmt.Errorf("zip archive: %w", err)
	}
	files := make(map[string]*zip.File, len(zr.File))
	var pkls []*zip.File
	for _, f := range zr.File {
		if _, dup := files[f.Name]; !dup {
			files[f.Name] = f
		}
		if strings.HasSuffix(f.Name, "/data.pkl") {
			pkls = append(pkls, f)
		}
	}
	switch len(pkls) {
	case 0:
		return nil, errors.New("zip: no <archive>/data.pkl record, so not a torch.save archive")
	case 1:
	default:
		return nil, fmt.Errorf("zip: %d data.pkl records (%s, %s, …), want one", len(pkls), pkls[0].Name, pkls[1].Name)
	}
	prefix := strings.TrimSuffix(pkls[0].Name, "data.pkl")
	if f, ok := files[prefix+"byteorder"]; ok { // absent before torch 2.1: little
		b, err := readRecord(data, f)
		if err != nil {
			return nil, err
		}
		if bo := strings.TrimSpace(string(b)); bo != "little" {
			return nil, fmt.Errorf("zip: byteorder %q is not supported, only little-endian files are", bo)
		}
	}
	l := newLoader(o, m, len(data))
	l.record = func(key string) ([]byte, error) {
		f, ok := files[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %q: zip has no record %sdata/%s", key, prefix, key)
		}
		return readRecord(data, f)
	}
	pkl, err := readRecord(data, pkls[0])
	if err != nil {
		return nil, err
	}
	v, _, err := l.unpickle(pkl, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkls[0].Name, err)
	}
	return v, nil
}

// maxDeflateRatio is deflate's largest possible expansion (about 1032:1),
// rounded up; a record claiming more is corrupt.
const maxDeflateRatio = 1100

// readRecord returns a zip record's bytes after checking its CRC. Stored
// records (all that torch writes) are slices of data, not copies.
func readRecord(data []byte, f *zip.File) ([]byte, error) {
	size := f.UncompressedSize64
	switch f.Method {
	case zip.Store:
		if f.CompressedSize64 != size {
			return nil, fmt.Errorf("zip: record %s: stored with sizes %d and %d", f.Name, f.CompressedSize64, size)
		}
		off, err := f.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("zip: record %s: %w", f.Name, err)
		}
		if off < 0 || off > int64(len(data)) || size > uint64(int64(len(data))-off) {
			return nil, fmt.Errorf("zip: record %s: %d bytes at offset %d run past the end of the %d-byte file", f.Name, size, off, len(data))
		}
		b := data[off : off+int64(size) : off+int64(size)]
		if got := crc32.ChecksumIEEE(b); got != f.CRC32 {
			return nil, fmt.Errorf("zip: record %s: CRC-32 %08x, want %08x (corrupt file)", f.Name, got, f.CRC32)
		}
		return b, nil
	case zip.Deflate:
		if f.CompressedSize64 > uint64(len(data)) || size > maxDeflateRatio*f.CompressedSize64+1024 {
			return nil, fmt.Errorf("zip: record %s: claims %d bytes from %d compressed", f.Name, size, f.CompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("zip: record %s: %w", f.Name, err)
		}
		defer rc.Close()
		// Grow with the data actually inflated rather than trusting the
		// header; reading to EOF makes archive/zip check the CRC.
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, io.LimitReader(rc, int64(size)+1)); err != nil {
			return nil, fmt.Errorf("zip: record %s: %w", f.Name, err)
		}
		if uint64(buf.Len()) != size {
			return nil, fmt.Errorf("zip: record %s: inflates to %d bytes, header says %d", f.Name, buf.Len(), size)
		}
		return buf.Bytes(), nil
	default:
		return nil, fmt.Errorf("zip: record %s: compression method %d is not supported", f.Name, f.Method)
	}
}

// Legacy container constants, from torch/serialization.py.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

const legacyProtocol = 1001

// loadLegacy reads the pre-1.6 container: pickles of the magic number, the
// protocol version, sys_info, the object and the sorted storage keys, then
// for each key an 8-byte little-endian element count and the raw bytes.
func (o LoadOptions) loadLegacy(data []byte, m *mapping) (any, error) {
	l := newLoader(o, m, len(data))
	pos := 0
	next := func(what string, persistent bool) (any, error) {
		v, n, err := l.unpickle(data[pos:], persistent)
		if err != nil {
			return nil, fmt.Errorf("legacy format: %s pickle at offset %d: %w", what, pos, err)
		}
		pos += n
		return v, nil
	}
	magic, err := next("magic number", false)
	if err != nil {
		return nil, err
	}
	if b, ok := magic.(*big.Int); !ok || b.Cmp(legacyMagic) != 0 {
		return nil, fmt.Errorf("legacy format: magic number %v, want 0x%x: not a torch.save file", magic, legacyMagic)
	}
	proto, err := next("protocol version", false)
	if err != nil {
		return nil, err
	}
	if proto != int64(legacyProtocol) {
		return nil, fmt.Errorf("legacy format: protocol version %v, want %d", proto, legacyProtocol)
	}
	sysInfo, err := next("sys_info", false)
	if err != nil {
		return nil, err
	}
	if d, ok := sysInfo.(*Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le != true {
			return nil, errors.New("legacy format: file was written big-endian, which is not supported")
		}
	}
	obj, err := next("object", true)
	if err != nil {
		return nil, err
	}
	keysV, err := next("storage key list", false)
	if err != nil {
		return nil, err
	}
	keys, ok := keysV.([]any)
	if !ok {
		return nil, fmt.Errorf("legacy format: storage key list is %s, not a list", typeName(keysV))
	}
	filled := make(map[string]bool, len(keys))
	for _, kv := range keys {
		key, ok := kv.(string)
		if !ok {
			return nil, fmt.Errorf("legacy format: storage key %v is not a string", kv)
		}
		r, ok := l.roots[key]
		if !ok {
			return nil, fmt.Errorf("legacy format: storage %q is listed but no tensor uses it", key)
		}
		if filled[key] {
			return nil, fmt.Errorf("legacy format: storage %q is listed twice", key)
		}
		filled[key] = true
		if len(data)-pos < 8 {
			return nil, fmt.Errorf("legacy format: storage %q: file ends at offset %d before its element count", key, len(data))
		}
		count := binary.LittleEndian.Uint64(data[pos:])
		pos += 8
		if count != uint64(r.numel) {
			return nil, fmt.Errorf("legacy format: storage %q: %d elements in the data, %d in its id", key, count, r.numel)
		}
		if r.nbytes > len(data)-pos {
			return nil, fmt.Errorf("legacy format: storage %q: needs %d bytes at offset %d, the file has %d", key, r.nbytes, pos, len(data)-pos)
		}
		r.data = data[pos : pos+r.nbytes : pos+r.nbytes]
		pos += r.nbytes
	}
	for key := range l.roots {
		if !filled[key] {
			return nil, fmt.Errorf("legacy format: storage %q is used but missing from the key list", key)
		}
	}
	return obj, nil
}
