package npy

import (
	"os"
	"path/filepath"
	"testing"
)

// Streamed rows read back as the same array, with a header numpy accepts
// (version 1.0, data 64-byte aligned, dict padded with spaces).
func TestRowWriter(t *testing.T) {
	for _, wide := range []bool{false, true} {
		p := filepath.Join(t.TempDir(), "rows.npy")
		w, err := CreateRows(p, 3, wide)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < 1001; r++ {
			if err := w.Append([]int32{int32(r), 50256, -int32(r)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(p); err == nil {
			t.Fatal("the file appeared before Close")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		data, shape, err := ReadInt32(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != 2 || shape[0] != 1001 || shape[1] != 3 || data[3*1000] != 1000 || data[3*1000+2] != -1000 {
			t.Fatalf("read back shape %v, last row %v", shape, data[3000:])
		}
		f, _ := os.Open(p)
		h, err := ParseHeader(f)
		f.Close()
		if err != nil || h.DataOffset%64 != 0 {
			t.Errorf("header %+v, %v", h, err)
		}
	}
}
