package npy

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// RowFile returns exactly the rows ReadInt32 returns, for every range, in
// int32 and int64 files, including ranges that span several read chunks.
func TestRowFileMatchesReadInt32(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 1500, 128 // int64: 1.5 MB of data, more than one chunk
	data := make([]int32, rows*cols)
	wide := make([]int64, rows*cols)
	for i := range data {
		data[i] = int32(rng.IntN(50257))
		wide[i] = int64(data[i])
	}
	p32, p64 := filepath.Join(dir, "r32.npy"), filepath.Join(dir, "r64.npy")
	if err := WriteInt32(p32, data, []int{rows, cols}); err != nil {
		t.Fatal(err)
	}
	if err := WriteInt64(p64, wide, []int{rows, cols}); err != nil {
		t.Fatal(err)
	}
	files := []string{p32, p64, golden("i4_6x16.npy"), golden("i8_2x3.npy")}
	for _, p := range files {
		want, shape, err := ReadInt32(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := OpenRows(p)
		if err != nil {
			t.Fatal(err)
		}
		if r.NumRows() != shape[0] || r.RowLen() != shape[1] {
			t.Fatalf("OpenRows(%s) = %d×%d, want %v", p, r.NumRows(), r.RowLen(), shape)
		}
		n, c := shape[0], shape[1]
		ranges := [][2]int{{0, n}, {0, 1}, {n - 1, 1}, {n / 3, n / 2}, {1, 0}}
		for range 20 {
			first := rng.IntN(n)
			ranges = append(ranges, [2]int{first, rng.IntN(n-first) + 1})
		}
		for _, rg := range ranges {
			got := make([]int32, rg[1]*c)
			if err := r.Read(got, rg[0], rg[1]); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want[rg[0]*c:(rg[0]+rg[1])*c]) {
				t.Fatalf("%s: Read(rows %d+%d) differs from ReadInt32", filepath.Base(p), rg[0], rg[1])
			}
		}
		r.Close()
	}
}

func TestRowFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.npy")
	WriteInt64(big, []int64{1, 2, 3, math.MaxInt32 + 1}, []int{2, 2})
	r, err := OpenRows(big)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]int32, 4)
	if err := r.Read(dst[:2], 0, 1); err != nil {
		t.Errorf("Read(row 0) = %v, want no error: row 1 holds the bad value", err)
	}
	if err := r.Read(dst, 0, 2); err == nil || !strings.Contains(err.Error(), "[1, 1] (2147483648) does not fit in int32") {
		t.Errorf("Read(row 1) error = %v", err)
	}
	r.Close()
	for _, c := range []struct{ file, want string }{
		{golden("f4_5.npy"), "dtype"},
		{golden("i4_empty.npy"), "not [rows, T]"},
		{golden("i2_3.npy"), "not [rows, T]"},
		{filepath.Join(dir, "none.npy"), "none.npy"},
	} {
		if _, err := OpenRows(c.file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenRows(%s) error = %v, want one containing %q", c.file, err, c.want)
		}
	}
}
