// Package analysis compares midcoders with what the transcoder alone
// implies. It holds the notebook's pinv baseline: W_mid =
// W_dec @ pinv(W_in @ W_out), the mid vectors that would map each
// feature's decoder direction through the MLP if the MLP were linear; the
// evaluation of reconstructions spliced into the model (`ctxdep evaluate`);
// and the per-feature context-dependence report (`ctxdep report`).
//
// Shape key: F features, C = d_model, N = d_mlp.
//
// Invariants: Pinv refuses a matrix holding NaN or ±Inf and drops the
// singular values at or below rtol·σ_max (torch's default cut-off for
// float32 input when rtol ≤ 0); PinvBaseline forms both products in
// float64 and rounds once to float32. Evaluate runs the blocks up to L
// once per batch and continues every variant (clean, transcoder, zero
// ablation, each midcoder) from the same resid_mid, summing in float64;
// cross-entropy is averaged over the positions that have a next token.
// Report reads the cache once, in shard order, and counts in integers; a
// feature that never fires has NaN consistency and is left out of the
// summary's statistics, which write 0 where nothing is defined (JSON has
// no NaN); top-k neurons tie to the lower index. WriteReport writes each
// file atomically.
package analysis
