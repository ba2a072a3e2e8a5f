//go:build !amd64

package kernels

var useExpSumAsm = false

func expSumAVX2FMA(row []float32, mx float32) float64 {
	panic("kernels: no expSumAVX2FMA on this architecture")
}

func maxAVX2(row []float32) (float32, bool) { panic("kernels: no maxAVX2 on this architecture") }
