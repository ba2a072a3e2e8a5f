package blasimpl

import (
	"os"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Use installs the build's BLAS, and it computes a hand-checked product.
func TestUse(t *testing.T) {
	info := Use(2)
	if info.Backend != Built || info.Kernel == "" || info.Threads != 2 {
		t.Fatalf("Use(2) = %+v, build %s", info, Built)
	}
	// make test runs the OpenBLAS build under OPENBLAS_CORETYPE=Haswell
	// too: the kernel must be the one asked for, or that run proves nothing.
	if want := os.Getenv("OPENBLAS_CORETYPE"); Built == "openblas" && want != "" && !strings.EqualFold(info.Kernel, want) {
		t.Errorf("OPENBLAS_CORETYPE=%s, but OpenBLAS runs the %s kernel", want, info.Kernel)
	}
	t.Logf("BLAS: %s, kernel %s", info.Backend, info.Kernel)
	a := blas32.General{Rows: 2, Cols: 2, Stride: 2, Data: []float32{1, 2, 3, 4}}
	c := blas32.General{Rows: 2, Cols: 2, Stride: 2, Data: make([]float32, 4)}
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, a, 0, c)
	if want := []float32{7, 10, 15, 22}; c.Data[0] != want[0] || c.Data[1] != want[1] || c.Data[2] != want[2] || c.Data[3] != want[3] {
		t.Errorf("[[1 2] [3 4]]² = %v, want %v", c.Data, want)
	}
}
