package analysis

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// connBench is a layer pair at GPT-2-small shapes: random transcoders
// (C = 768, F = 24,576 on both layers) and connBenchTokens tokens with
// connBenchActive active features per token on each layer.
type connBench struct {
	wDec, wEnc []float32
	src, tgt   *transcoder.Acts
	scale      []float32
}

const (
	connBenchC, connBenchF = 768, 24576
	connBenchTokens        = 512
	connBenchActive        = 40
)

var (
	connBenchOnce sync.Once
	connBenchData *connBench
)

func connBenchSetup(b *testing.B) *connBench {
	info := blasimpl.Use(0)
	b.Logf("blas %s, kernel %s, %d threads", info.Backend, info.Kernel, info.Threads)
	connBenchOnce.Do(func() {
		r := rand.New(rand.NewPCG(21, 22))
		d := &connBench{wDec: testutil.RandNormal(r, connBenchF*connBenchC, 0.04), wEnc: testutil.RandNormal(r, connBenchC*connBenchF, 0.04),
			scale: make([]float32, connBenchTokens)}
		acts := func() *transcoder.Acts {
			a := &transcoder.Acts{Indptr: []int64{0}}
			for t := 0; t < connBenchTokens; t++ {
				seen := map[int32]bool{}
				for len(seen) < connBenchActive {
					seen[int32(r.IntN(connBenchF))] = true
				}
				for j := int32(0); j < connBenchF; j++ {
					if seen[j] {
						a.Indices = append(a.Indices, j)
						a.Values = append(a.Values, float32(2*r.Float64()))
					}
				}
				a.Indptr = append(a.Indptr, int64(len(a.Indices)))
			}
			return a
		}
		d.src, d.tgt = acts(), acts()
		for i := range d.scale {
			d.scale[i] = float32(0.5 + r.Float64())
		}
		connBenchData = d
	})
	return connBenchData
}

// The whole computation with a 1 GiB block (5,461 targets, 5 passes):
// V's GEMMs (F·F·C·2 = 0.93 TFLOP), each target's lists and statistics,
// and the accumulation of M over the tokens on every pass.
func BenchmarkConnections(b *testing.B) {
	d := connBenchSetup(b)
	block := BlockForMemory(1<<30, connBenchF, connBenchF)
	data := sliceConnData(d.src, d.tgt, d.scale, 128)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		res, err := Connections(context.Background(), d.wDec, d.wEnc, connBenchF, connBenchF, connBenchC, data, ConnOptions{TopK: 16, Block: block})
		if err != nil {
			b.Fatal(err)
		}
		s := time.Since(start).Seconds()
		flops := 2 * float64(connBenchF) * float64(connBenchF) * float64(connBenchC)
		b.ReportMetric(flops/s/1e9, "GFLOP/s(V)")
		b.Logf("%d targets × %d sources, block %d, %d passes over %d tokens: %.1f s (%.0f GFLOP/s counting V's GEMMs only), %d MiB",
			connBenchF, connBenchF, block, res.Passes, res.Tokens, s, flops/s/1e9, ConnMemory(connBenchF, connBenchF, connBenchC, block, 16)>>20)
	}
}

// The accumulation of M alone: one pass over the tokens for a block of
// 5,461 targets (two ninths of all (source, target) pairs), per token.
func BenchmarkConnectionsAccumulate(b *testing.B) {
	d := connBenchSetup(b)
	block := BlockForMemory(1<<30, connBenchF, connBenchF)
	m := make([]float64, block*connBenchF)
	count := make([]int64, connBenchF)
	data := sliceConnData(d.src, d.tgt, d.scale, 128)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := accumulateM(context.Background(), data, m, count, connBenchF, connBenchF, 0, block, func(int) {}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/connBenchTokens, "ns/token")
	}
}
