package torchfile

import (
	"bytes"
	"testing"
)

// fuzzOpts keeps expanded tensors small so a fuzzed shape cannot make a
// read slow; everything else is the default.
var fuzzOpts = LoadOptions{MaxExpandedElements: 1 << 16}

// FuzzLoadBytes feeds arbitrary bytes to the loader. Seeds: the fixtures
// (added here) and testdata/fuzz/FuzzLoadBytes (whole legacy and zip
// fixtures and legacy prefixes, written by testdata/gen/gen_torchfile.py).
// Whatever loads must also read back without panicking, and Float32 must
// agree with its naive reference.
func FuzzLoadBytes(f *testing.F) {
	for _, data := range fixtureFiles(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := fuzzOpts.LoadBytes(data)
		if err != nil {
			if v != nil {
				t.Fatalf("LoadBytes returned a value with error %v", err)
			}
			return
		}
		budget := 10000
		readAll(v, &budget)
	})
}

// FuzzDataPickle fuzzes only the object pickle: the bytes become data.pkl of
// a well-formed zip with CRC-correct records data/0 … data/9, so mutations
// reach the unpickler instead of failing the zip checks. Seeds are the
// fixtures' own data.pkl records and legacy object pickles.
func FuzzDataPickle(f *testing.F) {
	for _, data := range fixtureFiles(f) {
		if bytes.HasPrefix(data, zipMagic) {
			if i := bytes.Index(data, []byte("data.pkl")); i >= 0 {
				// The stored record follows its 30-byte local header and name
				// (and any extra field); scanPickle finds the end.
				for j := i + len("data.pkl"); j < len(data) && j < i+200; j++ {
					if data[j] == 0x80 {
						if n, err := scanPickle(data[j:]); err == nil {
							f.Add(data[j : j+n])
							break
						}
					}
				}
			}
		}
	}
	recs := make([]record, 10)
	for i := range recs {
		recs[i] = record{"data/" + string(rune('0'+i)), bytes.Repeat([]byte{0x3f, 0x80, 0, 0}, 64)}
	}
	f.Fuzz(func(t *testing.T, pkl []byte) {
		v, err := fuzzOpts.LoadBytes(zipFile(t, "archive", pkl, recs...))
		if err == nil {
			budget := 10000
			readAll(v, &budget)
		}
	})
}
