package safetensors_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// Stream two tensors to a file, then map it and read them back.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "midcoder.safetensors")

	w, err := safetensors.Create(path, []safetensors.TensorInfo{
		{Name: "W_mid", DType: safetensors.F16, Shape: []int{2, 3}}, // (F, C)
		{Name: "b_mid", DType: safetensors.F32, Shape: []int{3}},    // (C)
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort() // a no-op once Close has succeeded
	// Rows may arrive one at a time; values run on into the next tensor.
	for _, row := range [][]float32{{1, 2, 3}, {0.1, 0.2, 0.3}} {
		if err := w.WriteFloat32(row); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.WriteFloat32([]float32{0, 0, 1}); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	for _, t := range f.Tensors() {
		v, err := f.Float32(t.Name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(t.Name, t.DType, t.Shape, v)
	}
	fmt.Println(f.Metadata())
	// Output:
	// W_mid F16 [2 3] [1 2 3 0.099975586 0.19995117 0.30004883]
	// b_mid F32 [3] [0 0 1]
	// map[format:pt]
}
