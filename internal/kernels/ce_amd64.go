package kernels

// useExpSumAsm selects maxAVX2 and expSumAVX2FMA in CrossEntropyRows where this CPU and
// OS run it (hasAVX2FMA); tests switch it off to reach the Go loop on the
// same machine. It must stay false where hasAVX2FMA is.
var useExpSumAsm = hasAVX2FMA

// expSumAVX2FMA returns Σ e^(x − mx) over row[:len(row)&^7], in float64,
// for mx the row's finite maximum (ce_amd64.s).
//
//go:noescape
func expSumAVX2FMA(row []float32, mx float32) float64

// maxAVX2 returns the maximum of row[:len(row)&^7] (len(row) ≥ 8) and
// whether one of them is NaN (ce_amd64.s).
//
//go:noescape
func maxAVX2(row []float32) (mx float32, nan bool)
