package tokrows

import (
	"strings"

	"github.com/ctxdep/ctxdep/internal/bpe"
)

// referenceRows is the naive reference of Stream: utils.py's
// tokenize_and_concatenate written out sequentially over all documents at
// once, with Python's str semantics ([]rune) and the tokenizer call's
// padding made explicit. It returns the rows of maxLength tokens.
func referenceRows(tok *bpe.Tokenizer, docs []string, maxLength int) [][]int32 {
	seqLen := maxLength - 1
	var rows [][]int32
	for start := 0; start < len(docs); start += BatchDocs {
		texts := docs[start:min(start+BatchDocs, len(docs))]
		valid := make([]string, len(texts))
		for i, t := range texts {
			valid[i] = bpe.ToValidUTF8(t) // what Python reads from the same bytes
		}
		fullText := []rune(strings.Join(valid, bpe.EOTText))
		numChunks := NumChunks
		chunkLength := floorDiv(len(fullText)-1, numChunks) + 1
		chunks := make([]string, numChunks)
		for i := range chunks {
			chunks[i] = string(pySlice(fullText, i*chunkLength, (i+1)*chunkLength))
		}
		// tokenizer(chunks, return_tensors="np", padding=True)["input_ids"].flatten()
		encoded := make([][]int32, numChunks)
		width := 0
		for i, c := range chunks {
			encoded[i] = tok.Encode(c)
			width = max(width, len(encoded[i]))
		}
		var flat []int32
		for _, e := range encoded {
			flat = append(flat, e...)
			for range width - len(e) {
				flat = append(flat, bpe.EOT) // pad_token_id
			}
		}
		var tokens []int32 // tokens[tokens != pad_token_id]
		for _, id := range flat {
			if id != bpe.EOT {
				tokens = append(tokens, id)
			}
		}
		numBatches := len(tokens) / seqLen
		tokens = tokens[:seqLen*numBatches]
		for b := range numBatches {
			row := append([]int32{bpe.EOT}, tokens[b*seqLen:(b+1)*seqLen]...)
			rows = append(rows, row)
		}
	}
	return rows
}

// pySlice is Python's s[i:j] for 0 ≤ i ≤ j.
func pySlice(s []rune, i, j int) []rune {
	return s[min(i, len(s)):min(j, len(s))]
}
