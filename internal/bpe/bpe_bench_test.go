package bpe

import "testing"

// BenchmarkEncode measures Encode (this package's rank-BPE; tiktoken-go only
// supplies the embedded ranks) on 1 MiB of generated English-like text, one
// goroutine; BenchmarkEncodeNaive is the same-run baseline (the encoder.py
// reference).
func BenchmarkEncode(b *testing.B) {
	tok, _ := gpt2(b)
	benchEncode(b, tok.Encode)
}

func BenchmarkEncodeNaive(b *testing.B) {
	_, naive := gpt2(b)
	benchEncode(b, naive.encode)
}

func benchEncode(b *testing.B, encode func(string) []int32) {
	text := englishText(1<<20, 7)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	n := 0
	for b.Loop() {
		n += len(encode(text))
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
}
