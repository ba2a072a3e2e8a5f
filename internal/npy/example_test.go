package npy_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ctxdep/ctxdep/internal/npy"
)

// Write token ids as numpy would, then read them back; np.load reads the
// same file.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tokens.npy")

	tokens := []int64{50256, 464, 2068, 50256, 1212, 318} // (S, T) = (2, 3)
	if err := npy.WriteInt64(path, tokens, []int{2, 3}); err != nil {
		log.Fatal(err)
	}

	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	h, err := npy.ParseHeader(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("descr %s, shape %v, data at byte %d\n", h.Descr, h.Shape, h.DataOffset)

	ids, shape, err := npy.ReadInt32(path) // '<i8' narrowed, range-checked
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(shape, ids)
	// Output:
	// descr <i8, shape [2 3], data at byte 128
	// [2 3] [50256 464 2068 50256 1212 318]
}
