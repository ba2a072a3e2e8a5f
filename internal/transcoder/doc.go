// Package transcoder loads the per-layer transcoders of Dunefsky et al.
// (SPEC §1: the real torch.save pickles of pchlenski/gpt2-transcoders and
// their _log_feature_sparsity.pt files), and encodes MLP inputs to sparse
// feature activations and decodes them back (SPEC §1.3).
//
// Shape key: M rows (tokens), C = DIn = DOut (768 for GPT-2 small), F =
// DSAE features (24,576).
//
// Sparse activations are CSR (Acts): row r's active features are
// Indices[Indptr[r]:Indptr[r+1]], ascending, with their values (all > 0).
package transcoder
