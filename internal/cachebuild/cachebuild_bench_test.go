package cachebuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// BenchmarkForwardEncode measures what `cache build --with-acts` computes
// per batch: the forward pass to block 8 and the transcoder encoder with
// compaction, at GPT-2-small shapes (random weights), B=32, T=128.
// scripts/bench.sh runs it beside scripts/bench_torch.py, for a PyTorch
// figure measured on the same machine in the same run.
func BenchmarkForwardEncode(b *testing.B) {
	info := blasimpl.Use(0) // already installed by TestMain; returns what is in use
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	m := gpt2.Random(gpt2.Small(), 1)
	tc := transcoder.Random(m.DModel, 24576, 100, 2)
	const bs, t = 32, 128
	tok := gpt2.RandomTokens(bs*t, m.DVocab, 3)
	ws := m.NewWorkspace(bs * t)
	enc := tc.NewEncoder()
	var acts transcoder.Acts
	for b.Loop() {
		x, _, err := m.RunToBlock(ws, tok, bs, t, 8, nil)
		if err != nil {
			b.Fatal(err)
		}
		enc.Encode(&acts, x, bs*t)
	}
	b.ReportMetric(float64(bs*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(len(acts.Indices))/(bs*t), "l0")
}

// BenchmarkLayerSet is `cache build` of 1,024 tokens (8 rows of 128) at
// GPT-2-small shapes (random weights), shards written to a temporary
// directory on the local disk: layer 11 alone against layers 0–11 from the
// same single pass (`cache build --layers all`). The set's extra cost is
// copying and writing eleven more caches; the forward pass is shared.
func BenchmarkLayerSet(b *testing.B) {
	info := blasimpl.Use(0)
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	m := gpt2.Random(gpt2.Small(), 1)
	const rows, t = 8, 128
	tok := gpt2.RandomTokens(rows*t, m.DVocab, 3)
	for _, c := range []struct {
		name   string
		layers []int
	}{{"layer=11", []int{11}}, {"layers=0-11", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}} {
		b.Run(c.name, func(b *testing.B) {
			root := b.TempDir()
			pass := NewCPUPass(m, c.layers, nil, rows*t)
			for b.Loop() {
				dir, err := os.MkdirTemp(root, "set")
				if err != nil {
					b.Fatal(err)
				}
				o := Options{Model: m, Rows: Int32Rows{Data: tok, T: t}, DataKind: "bench", BatchSize: rows, PerShard: rows,
					DType: "float32", Version: "bench", Pass: pass}
				for _, l := range c.layers {
					o.Layers = append(o.Layers, Layer{Layer: l, Out: filepath.Join(dir, fmt.Sprint(l))})
				}
				if _, err := Build(context.Background(), o); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(rows*t*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// sleepPass stands for a GPU's pass: it fills x and y (no activations) and
// leaves the host idle for d per batch, as a device computing would.
type sleepPass struct{ d time.Duration }

func (p sleepPass) Run(tokens []int32, b, t int, out []Capture) error {
	for _, c := range out {
		for i := range c.X[:len(tokens)*768] {
			c.X[i], c.Y[i] = float32(i), -float32(i)
		}
	}
	time.Sleep(p.d)
	return nil
}

// BenchmarkBuildOverlap is a build of 8 batches of 16 rows of 128 tokens at
// GPT-2 small's width (12.6 MB of x and y per batch, hashed and written)
// with a pass that takes no host time: none ("pass=0s": the writes alone),
// and 40 ms per batch ("pass=40ms"). With the writes overlapping the next
// batch's pass, the second approaches the larger of the two per batch
// rather than their sum (40 ms plus the first's time, the baseline in the
// same run).
func BenchmarkBuildOverlap(b *testing.B) {
	m := gpt2.Random(gpt2.Small(), 1)
	const rows, t, batches = 16, 128, 8
	tok := gpt2.RandomTokens(batches*rows*t, m.DVocab, 3)
	for _, d := range []time.Duration{0, 40 * time.Millisecond} {
		b.Run("pass="+d.String(), func(b *testing.B) {
			root := b.TempDir()
			for b.Loop() {
				dir, err := os.MkdirTemp(root, "c")
				if err != nil {
					b.Fatal(err)
				}
				o := Options{Model: m, Rows: Int32Rows{Data: tok, T: t}, DataKind: "bench", BatchSize: rows, PerShard: rows,
					DType: "float32", Version: "bench", Pass: sleepPass{d}, Layers: []Layer{{Layer: 8, Out: dir}}}
				if _, err := Build(context.Background(), o); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N*batches)*1e3, "ms/batch")
		})
	}
}
