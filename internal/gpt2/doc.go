// Package gpt2 loads GPT-2 from its Hugging Face checkpoint, applies
// TransformerLens's default weight processing (fold LayerNorm,
// centre writing weights, centre unembed, fold value biases) and runs the
// processed model on CPU, so that every hook value equals what
// TransformerLens computes.
//
// Shape key: B batch rows, T positions (T ≤ NCtx), C = DModel, H heads,
// D = DHead, N = DMLP, V = DVocab. Tokens are (B·T) int32, row-major;
// activations are (B·T, C) float32, row-major.
//
// Invariants of a loaded Model: every matrix that writes to the residual
// stream has zero mean over C; every matrix that reads from it (after a
// LayerNorm) has zero mean over C; b_V is folded into b_O. The forward pass
// therefore needs LayerNorm without affine parameters only.
package gpt2
