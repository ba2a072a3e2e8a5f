// Package tokrows turns a stream of documents into token rows exactly as
// the notebook's copy of TransformerLens's tokenize_and_concatenate does
// (michaelttpearce/transcoder-exploration utils.py), with GPT-2's
// tokenizer from package bpe.
//
// Shape key: D = BatchDocs documents per batch (the last batch may be
// smaller), K = NumChunks chunks per batch, T = max_length tokens per row
// (128), S = T − 1 text tokens per row.
//
// Per batch of D documents, in order:
//
//	full = "<|endoftext|>".join(docs); L = len(full) in code points
//	chunk_len = (L − 1) // K + 1 (floor division: L = 0 gives 0)
//	chunk k = full[k·chunk_len : (k+1)·chunk_len] by code points, k < K
//	tokens = concat(Encode(chunk k)) with every bpe.EOT removed
//	rows = first ⌊len(tokens)/S⌋·S tokens, S per row, each after bpe.EOT
//
// Invariants: every row starts with bpe.EOT (BOS) and holds no other EOT;
// tokens never cross a batch boundary (each batch's remainder of fewer than
// S tokens is discarded, as are separators and any EOT a document holds,
// though a separator cut by a chunk boundary survives as text tokens, TL
// issue #1133); rows come out in document order.
//
// Invalid UTF-8 in a document (a Go string may hold it, a Python str
// cannot) is replaced first, document by document, with U+FFFD by
// bpe.ToValidUTF8 (Python's errors="replace"), so L counts the code points
// Python would see for text decoded from the same bytes.
//
// A Stream reads documents and tokenizes batches in its own goroutine, up to
// two batches ahead of the rows handed out, the K chunks of a batch in
// parallel (GOMAXPROCS workers); memory is bounded by a few batches.
// naive.go keeps the formula written out sequentially, the reference the
// tests compare with; golden rows come from testdata/gen/gen_tokrows.py.
package tokrows
