package torchfile

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeTranscoderLike writes a zip torch file shaped like one published
// transcoder (W_enc [768, 24576], b_enc [24576], W_dec
// [24576, 768], b_dec, b_dec_out [768]; ≈151 MB of float32), with seeded
// random values, using this package's test pickle writer.
func writeTranscoderLike(b *testing.B, path string) int64 {
	b.Helper()
	const dIn, dSAE = 768, 24576
	params := []struct {
		name  string
		shape []int
	}{{"W_enc", []int{dIn, dSAE}}, {"b_enc", []int{dSAE}}, {"W_dec", []int{dSAE, dIn}}, {"b_dec", []int{dIn}}, {"b_dec_out", []int{dIn}}}
	var items []func(*pb)
	for i, p := range params {
		numel, stride := 1, make([]int, len(p.shape))
		for k := len(p.shape) - 1; k >= 0; k-- {
			stride[k] = numel
			numel *= p.shape[k]
		}
		items = append(items, func(q *pb) {
			q.str(p.name).tensor("FloatStorage", string(rune('0'+i)), numel, 0, p.shape, stride)
		})
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	prefix := "final_sparse_autoencoder_gpt2-small_blocks.8.ln2.hook_normalized_24576/"
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: prefix + "data.pkl", Method: zip.Store})
	w.Write(dictOf(items...))
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 4*dSAE)
	for i, p := range params {
		numel := 1
		for _, s := range p.shape {
			numel *= s
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: prefix + "data/" + string(rune('0'+i)), Method: zip.Store})
		if err != nil {
			b.Fatal(err)
		}
		for numel > 0 {
			n := min(numel, dSAE)
			for j := range n {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(float32(rng.NormFloat64())))
			}
			w.Write(buf[:4*n])
			numel -= n
		}
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkLoad loads a transcoder-sized file (written once to a temp dir)
// and converts every tensor to float32, the way the transcoder loader does.
// "naive" reads each element with the reference float32Naive: the same-run
// baseline for the run-based fast path.
func BenchmarkLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a 151 MB file")
	}
	path := filepath.Join(b.TempDir(), "transcoder.pt")
	size := writeTranscoderLike(b, path)
	readAllF32 := func(b *testing.B, v any, naive bool) {
		sd, err := StateDict(v)
		if err != nil {
			b.Fatal(err)
		}
		for _, x := range sd.Values {
			var err error
			if naive {
				_, err = x.(*Tensor).float32Naive()
			} else {
				_, err = x.(*Tensor).Float32()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name          string
		opts          LoadOptions
		float32, slow bool
	}{
		{"open/mmap", LoadOptions{}, false, false},
		{"open/read", LoadOptions{NoMmap: true}, false, false},
		{"float32/mmap", LoadOptions{}, true, false},
		{"float32/read", LoadOptions{NoMmap: true}, true, false},
		{"float32/naive", LoadOptions{}, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				v, err := bc.opts.Load(path)
				if err != nil {
					b.Fatal(err)
				}
				if bc.float32 {
					readAllF32(b, v, bc.slow)
				}
			}
		})
	}
}
