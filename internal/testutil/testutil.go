package testutil

import (
	"math"
	"os"
	"testing"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// Close fails t unless |got[i] − want[i]| ≤ abs + rel·|want[i]| for every
// i (NaN never passes).
func Close(t testing.TB, what string, got, want []float32, abs, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= abs+rel*math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %.9g, want %.9g (tol %g + %g·|want|)", what, i, got[i], want[i], abs, rel)
		}
	}
}

// Golden reads every F32 tensor of a safetensors file, by name.
func Golden(t testing.TB, path string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, info := range f.Tensors() {
		if info.DType != safetensors.F32 {
			continue
		}
		if out[info.Name], err = f.Float32(info.Name); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// ListDir returns the names in dir, sorted (os.ReadDir's order).
func ListDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
