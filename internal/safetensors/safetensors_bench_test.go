package safetensors

import (
	"fmt"
	"testing"
)

// BenchmarkFloat32Into decodes a 100 MB tensor into a reused buffer; the
// F32 case is a memmove on little-endian hosts, F16/BF16 widen element by
// element. b.SetBytes makes the reported MB/s refer to the file's bytes.
func BenchmarkFloat32Into(b *testing.B) {
	const nbytes = 100 << 20
	for _, dt := range []DType{F32, F16, BF16} {
		b.Run(string(dt), func(b *testing.B) {
			n := nbytes / dt.Size()
			header := fmt.Sprintf(`{"t":{"dtype":"%s","shape":[%d],"data_offsets":[0,%d]}}`, dt, n, nbytes)
			f, err := Parse(handFile(header, make([]byte, nbytes)))
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]float32, n)
			b.SetBytes(nbytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := f.Float32Into(dst, "t"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}
