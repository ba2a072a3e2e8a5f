package tokrows

import (
	"fmt"
	"io"
	"runtime"
	"testing"
)

// BenchmarkStream measures tokens/s (text tokens in the rows, BOS
// excluded) of a Stream over 6 MiB of generated English documents of ~2 KB
// (~3,100 documents: four batches), with GOMAXPROCS 1 and 2.
// BenchmarkReference is the same-run baseline: the sequential reference
// over the same documents. The goal (ctxdep issue) is ≥ 10× the
// GPT-2 forward pass, ~18,000 tokens/s.
func BenchmarkStream(b *testing.B) {
	tok := gpt2(b)
	docs := englishDocs(6<<20, 2000, 9)
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			row := make([]int32, DefaultMaxLength)
			rows := 0
			for b.Loop() {
				s := New(tok, sliceSource(docs), 0)
				for {
					err := s.Next(row)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					rows++
				}
			}
			b.ReportMetric(float64(rows*(DefaultMaxLength-1))/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(len(docs)), "docs")
		})
	}
}

func BenchmarkReference(b *testing.B) {
	tok := gpt2(b)
	docs := englishDocs(6<<20, 2000, 9)
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			rows := 0
			for b.Loop() {
				rows += len(referenceRows(tok, docs, DefaultMaxLength))
			}
			b.ReportMetric(float64(rows*(DefaultMaxLength-1))/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
