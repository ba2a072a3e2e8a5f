package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkGeluNew measures gelu_new over one MLP activation of B·T = 4096
// tokens × 3072: GeluNew as dispatched ("fast": the AVX2+FMA kernel where
// the CPU has it), GeluNew held to its pure-Go path ("go"), and the float64
// math.Tanh reference, in the same run.
func BenchmarkGeluNew(b *testing.B) {
	src := randSlice(rand.New(rand.NewPCG(1, 1)), 4096*3072, 1)
	dst := make([]float32, len(src))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			GeluNew(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("go", func(b *testing.B) {
		saved := useGeluAsm
		useGeluAsm = false
		defer func() { useGeluAsm = saved }()
		for b.Loop() {
			GeluNew(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("naive", func(b *testing.B) {
		for b.Loop() {
			GeluNewNaive(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
}

// BenchmarkMatMul measures MatMul at the forward pass's GEMM shapes
// (B·T = 4096 rows): QKV, MLP in, MLP out, and the transcoder encoder.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, sh := range [][3]int{{4096, 768, 2304}, {4096, 768, 3072}, {4096, 3072, 768}, {256, 768, 24576}, {512, 768, 24576}, {1024, 768, 24576}} {
		m, k, n := sh[0], sh[1], sh[2]
		a, w, dst := randSlice(r, m*k, 1), randSlice(r, k*n, 1), make([]float32, m*n)
		b.Run(fmt.Sprintf("%dx%dx%d", m, k, n), func(b *testing.B) {
			for b.Loop() {
				MatMul(dst, a, w, m, k, n, false)
			}
			b.ReportMetric(2*float64(m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
