package gpt2

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// benchDir returns a GPT-2-small-shaped checkpoint for the start-up
// benchmarks: $CTXDEP_BENCH_MODEL when set (a directory that
// scripts/make_random_gpt2.py wrote), else random weights written into the
// benchmark's temporary directory (548 MB, removed after it).
func benchDir(b *testing.B) string {
	b.Helper()
	if d := os.Getenv("CTXDEP_BENCH_MODEL"); d != "" {
		return d
	}
	d := b.TempDir()
	if err := WriteRandomCheckpoint(d, Small(), 1); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkReadFile is the plain read the start-up goals are measured
// against: model.safetensors into memory with os.ReadFile.
func BenchmarkReadFile(b *testing.B) {
	path := filepath.Join(benchDir(b), SafetensorsFile)
	for b.Loop() {
		buf, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(buf)))
	}
}

// mmapSource is the source Load used before LoadParts: the file mapped,
// each tensor copied out of the mapping.
type mmapSource struct{ f *safetensors.File }

func (s mmapSource) tensors() []sourceTensor {
	var ts []sourceTensor
	for _, info := range s.f.Tensors() {
		ts = append(ts, sourceTensor{name: info.Name, shape: info.Shape, read: func(dst []float32, _ int) error {
			v, err := s.f.Float32(info.Name) // readHF reads tensors whole
			copy(dst, v)
			return err
		}})
	}
	return ts
}
func (s mmapSource) close() error { return s.f.Close() }

// BenchmarkLoad measures LoadParts at GPT-2-small shapes (the whole model,
// the blocks up to 8 as cache build --layer 8 loads them, block 8's MLP
// as pinv-baseline and fit --cache do) and, as the baseline, the loader it
// replaced (mmap, a copy per tensor, then process one step at a time).
func BenchmarkLoad(b *testing.B) {
	dir := benchDir(b)
	b.Run("before=mmap+process", func(b *testing.B) {
		cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			f, err := safetensors.Open(filepath.Join(dir, SafetensorsFile))
			if err != nil {
				b.Fatal(err)
			}
			hf, err := readHF(cfg, mmapSource{f})
			if err != nil {
				b.Fatal(err)
			}
			process(cfg, hf)
			f.Close()
		}
	})
	for _, bc := range []struct {
		name  string
		parts Parts
	}{{"all", All()}, {"through=8", Through(8)}, {"mlp=8", MLP(8)}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := LoadParts(dir, bc.parts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
