// Package bpe is GPT-2's byte-level BPE tokenizer, as TransformerLens uses
// it through Hugging Face's GPT2TokenizerFast.
//
// Encoding: the literal "<|endoftext|>" anywhere in the text is split out
// first and becomes [EOT] (50256), an allowed special token as in HF; every
// other span is pre-tokenized with GPT-2's regex ([Pattern]), each piece's
// UTF-8 bytes are merged by BPE, and the merged byte strings are looked up.
// Shape key: V = 50,257 ids (256 single bytes, 50,000 merges in order, EOT).
//
// The fast path pre-tokenizes with dlclark/regexp2, the engine tiktoken-go
// uses (RE2 lacks the lookahead), and merges by tiktoken's rank-BPE (join
// the adjacent parts whose concatenation has the lowest id), with a heap
// for pieces over 64 bytes: tiktoken-go's own merge loop is quadratic and
// takes seconds on 100 KB of newlines. The ranks are the r50k_base file
// that tiktoken-go-loader embeds ([GPT2], no network) or are adapted from a
// user's Hugging Face files ([FromFiles]). Rank-BPE equals encoder.py's
// pair-rank BPE only because GPT-2's ids follow merge order (merge i makes
// id 256+i) and every merge is the split that rank-BPE itself finds;
// FromFiles checks both and refuses files that break them. naive.go keeps
// the reference next to it: a hand-written pre-tokenizer and the pair-rank
// merge loop of OpenAI's encoder.py; tests and fuzz tests compare the two
// (and tiktoken-go's encoder), and golden ids come from an independent
// Python implementation (testdata/gen/gen_bpe.py).
//
// Invalid UTF-8: a Go string may hold it, a Python str cannot. Encode (and
// Decode's output) first replace each maximal ill-formed subsequence with
// U+FFFD, exactly as Python's bytes.decode("utf-8", errors="replace") does
// ([ToValidUTF8]); so Encode(s) is what the Python pipeline gives for text
// read from the same bytes, and Decode renders partial multi-byte tokens as
// U+FFFD like HF's decode.
//
// A Tokenizer is immutable and safe for concurrent use.
package bpe
