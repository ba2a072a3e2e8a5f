package blasimpl

import (
	"fmt"
	"math"
	"math/rand/v2"
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

// The build's SVD decomposes: U diag(σ) Vᵀ = a to float64 rounding, σ
// descending and non-negative, U's and V's columns orthonormal, for a
// wide, a tall and a rank-deficient matrix.
func TestSVD(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{5, 3}, {3, 5}, {40, 40}} {
		m, n := sh[0], sh[1]
		t.Run(fmt.Sprintf("%dx%d", m, n), func(t *testing.T) {
			a := make([]float64, m*n)
			for i := range a {
				a[i] = r.NormFloat64()
			}
			if m == n {
				copy(a[n:2*n], a[:n]) // rows 0 and 1 equal: rank n−1
			}
			sigma, u, v, err := SVD(a, m, n)
			if err != nil {
				t.Fatal(err)
			}
			k := min(m, n)
			if len(sigma) != k || len(u) != m*k || len(v) != n*k {
				t.Fatalf("shapes: %d σ, U %d, V %d", len(sigma), len(u), len(v))
			}
			for i := 1; i < k; i++ {
				if sigma[i] > sigma[i-1] || sigma[i] < 0 {
					t.Fatalf("σ not descending and non-negative: %v", sigma)
				}
			}
			if m == n && sigma[k-1] > 1e-12*sigma[0] {
				t.Errorf("rank-deficient matrix: smallest σ %g", sigma[k-1])
			}
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s float64
					for l := 0; l < k; l++ {
						s += u[i*k+l] * sigma[l] * v[j*k+l]
					}
					if math.Abs(s-a[i*n+j]) > 1e-12*float64(k)*sigma[0] {
						t.Fatalf("(U Σ Vᵀ)[%d, %d] = %g, a = %g", i, j, s, a[i*n+j])
					}
				}
			}
			for _, q := range []struct {
				name string
				x    []float64
				rows int
			}{{"U", u, m}, {"V", v, n}} {
				for p := 0; p < k; p++ {
					for l := 0; l < k; l++ {
						if m == n && (p == k-1 || l == k-1) {
							continue // the null direction's singular vectors are any unit vector
						}
						var s float64
						for i := 0; i < q.rows; i++ {
							s += q.x[i*k+p] * q.x[i*k+l]
						}
						want := 0.0
						if p == l {
							want = 1
						}
						if math.Abs(s-want) > 1e-12 {
							t.Fatalf("%s columns %d·%d = %g, want %g", q.name, p, l, s, want)
						}
					}
				}
			}
		})
	}
}
