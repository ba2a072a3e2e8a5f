package owt_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/owt"
)

// BinRows plugs into the activation-cache builder.
var _ cachebuild.Rows = (*owt.BinRows)(nil)

// Read a small JSON-lines corpus in the order of the Hugging Face
// streaming shuffle with seed 42 and a 3-document buffer. (The order was
// checked with the Python reimplementation in testdata/gen/gen_owt_rng.py:
// hf_stream(42, 3, [6]) = [0, 2, 1, 5, 3, 4].)
func Example() {
	dir, err := os.MkdirTemp("", "owt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var lines []byte
	for i := range 6 {
		lines = fmt.Appendf(lines, "{\"text\": \"document %d\"}\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), lines, 0o644); err != nil {
		log.Fatal(err)
	}

	r, err := owt.Open(dir, owt.Options{ShuffleBuffer: 3, Seed: 42})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		doc, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(doc)
	}
	st := r.Stats()
	fmt.Printf("%d documents, %d bytes, from %d file\n", st.Documents, st.Bytes, st.Files)
	// Output:
	// document 0
	// document 2
	// document 1
	// document 5
	// document 3
	// document 4
	// 6 documents, 60 bytes, from 1 file
}

// Cut nanoGPT's token stream into TransformerLens-shaped rows.
func ExampleOpenBin() {
	dir, err := os.MkdirTemp("", "owt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ids := []uint16{15496, 995, 0, 50256, 464, 2068, 50256, 40, 1101} // three documents
	b := make([]byte, 2*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint16(b[2*i:], id)
	}
	path := filepath.Join(dir, "val.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Fatal(err)
	}

	for _, drop := range []bool{false, true} {
		rows, err := owt.OpenBin(path, owt.BinOptions{RowLen: 4, DropEOT: drop})
		if err != nil {
			log.Fatal(err)
		}
		dst := make([]int32, rows.NumRows()*rows.RowLen())
		if err := rows.Read(dst, 0, rows.NumRows()); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("drop %v: %d rows %v\n", drop, rows.NumRows(), dst)
		rows.Close()
	}
	// Output:
	// drop false: 3 rows [50256 15496 995 0 50256 50256 464 2068 50256 50256 40 1101]
	// drop true: 2 rows [50256 15496 995 0 50256 464 2068 40]
}
