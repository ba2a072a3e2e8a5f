package owt

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// writeBin writes ids as nanoGPT's prepare.py does: headerless uint16 LE.
func writeBin(t testing.TB, dir string, ids []uint16) string {
	t.Helper()
	b := make([]byte, 2*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint16(b[2*i:], id)
	}
	return writeFile(t, dir, "train.bin", b)
}

// fakeStream is documents of random length and random ids, each followed
// by 50256, as prepare.py concatenates them.
func fakeStream(seed uint64, n int) []uint16 {
	rng := rand.New(rand.NewPCG(seed, 1))
	var ids []uint16
	for len(ids) < n {
		for range rng.IntN(300) {
			ids = append(ids, uint16(rng.IntN(eot)))
		}
		ids = append(ids, eot)
	}
	return ids[:n]
}

// binRowsNaive is the reference: the whole stream in memory.
func binRowsNaive(ids []uint16, rowLen int, drop bool) [][]int32 {
	var stream []int32
	for _, id := range ids {
		if drop && id == eot {
			continue
		}
		stream = append(stream, int32(id))
	}
	body := rowLen - 1
	var rows [][]int32
	for r := 0; (r+1)*body <= len(stream); r++ {
		rows = append(rows, append([]int32{eot}, stream[r*body:(r+1)*body]...))
	}
	return rows
}

func TestBinRowsAgainstNaive(t *testing.T) {
	for _, tc := range []struct {
		rowLen int
		drop   bool
		tokens int
	}{
		{128, false, 50_000},
		{128, true, 50_000},
		{4, false, 3_001},
		{4, true, 5_000}, // > binIndexStride rows: Reads start from later index entries
		{2, true, 2_000},
	} {
		t.Run(fmt.Sprintf("rowlen=%d/drop=%v", tc.rowLen, tc.drop), func(t *testing.T) {
			ids := fakeStream(uint64(tc.tokens), tc.tokens)
			p := writeBin(t, t.TempDir(), ids)
			b, err := OpenBin(p, BinOptions{RowLen: tc.rowLen, DropEOT: tc.drop})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			want := binRowsNaive(ids, tc.rowLen, tc.drop)
			if b.NumRows() != len(want) || b.RowLen() != tc.rowLen || b.Tokens() != int64(len(ids)) {
				t.Fatalf("NumRows, RowLen, Tokens = %d, %d, %d, want %d, %d, %d", b.NumRows(), b.RowLen(), b.Tokens(), len(want), tc.rowLen, len(ids))
			}
			rng := rand.New(rand.NewPCG(7, 7))
			spans := [][2]int{{0, 1}, {0, len(want)}, {len(want) - 1, 1}, {0, 0}}
			for range 50 {
				first := rng.IntN(len(want))
				spans = append(spans, [2]int{first, rng.IntN(len(want)-first) + 1})
			}
			for _, sp := range spans {
				first, n := sp[0], sp[1]
				dst := make([]int32, n*tc.rowLen)
				if err := b.Read(dst, first, n); err != nil {
					t.Fatalf("Read(%d, %d): %v", first, n, err)
				}
				for r := range n {
					if got := dst[r*tc.rowLen : (r+1)*tc.rowLen]; !reflect.DeepEqual(got, want[first+r]) {
						t.Fatalf("Read(%d, %d) row %d = %v, want %v", first, n, first+r, got, want[first+r])
					}
				}
			}
		})
	}
}

func TestBinRowsConcurrentReads(t *testing.T) {
	ids := fakeStream(3, 40_000)
	b, err := OpenBin(writeBin(t, t.TempDir(), ids), BinOptions{DropEOT: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := binRowsNaive(ids, defaultRowLen, true)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for first := g; first < len(want); first += 4 {
				dst := make([]int32, defaultRowLen)
				if err := b.Read(dst, first, 1); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(dst, want[first]) {
					errs <- fmt.Errorf("row %d = %v, want %v", first, dst, want[first])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBinErrors(t *testing.T) {
	dir := t.TempDir()
	ids := fakeStream(5, 1000)
	ids[600] = 50257
	badID := writeBin(t, filepath.Join(dir, "bad"), ids)
	odd := writeFile(t, dir, "odd.bin", []byte{1, 2, 3})
	short := writeBin(t, filepath.Join(dir, "short"), make([]uint16, 126))
	onlyEOT := writeBin(t, filepath.Join(dir, "eot"), []uint16{eot, eot, eot, eot})

	_, err := OpenBin(odd, BinOptions{})
	wantErr(t, err, "odd.bin", "3 bytes is odd")
	_, err = OpenBin(short, BinOptions{})
	wantErr(t, err, "train.bin", "too few tokens for one row of 128")
	_, err = OpenBin(onlyEOT, BinOptions{RowLen: 2, DropEOT: true})
	wantErr(t, err, "too few tokens other than 50256")
	_, err = OpenBin(filepath.Join(dir, "nope.bin"), BinOptions{})
	wantErr(t, err, "nope.bin")
	_, err = OpenBin(dir, BinOptions{})
	wantErr(t, err, "not a regular file")
	_, err = OpenBin(short, BinOptions{RowLen: 1})
	wantErr(t, err, "row length 1")

	// Drop mode reads every token when it opens.
	_, err = OpenBin(badID, BinOptions{DropEOT: true})
	wantErr(t, err, "bad/train.bin", "token id 50257 at byte offset 1200")
	// Otherwise Read finds it, and only in rows that contain it.
	b, err := OpenBin(badID, BinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dst := make([]int32, 2*defaultRowLen)
	if err := b.Read(dst, 0, 2); err != nil {
		t.Errorf("rows 0–1 hold no bad id, Read: %v", err)
	}
	wantErr(t, b.Read(dst, 3, 2), "token id 50257 at byte offset 1200")
	wantErr(t, b.Read(dst, b.NumRows()-1, 2), "rows [6, 8) asked for, the file has 7")
	wantErr(t, b.Read(dst, -1, 1), "rows [-1, 0)")
	wantErr(t, b.Read(dst[:10], 0, 1), "destination holds 10 tokens")

	// A file that shrinks after OpenBin is an error, not short rows.
	shrink := writeBin(t, filepath.Join(dir, "shrink"), fakeStream(9, 1000))
	b2, err := OpenBin(shrink, BinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := os.Truncate(shrink, 500); err != nil {
		t.Fatal(err)
	}
	wantErr(t, b2.Read(make([]int32, defaultRowLen), 5, 1), "shrink/train.bin")
}
