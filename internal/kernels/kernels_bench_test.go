package kernels

import (
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
