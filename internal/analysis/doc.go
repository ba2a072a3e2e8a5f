// Package analysis compares midcoders with what the transcoder alone
// implies. It holds the notebook's pinv baseline (SPEC §4.2): W_mid =
// W_dec @ pinv(W_in @ W_out), the mid vectors that would map each
// feature's decoder direction through the MLP if the MLP were linear; the
// evaluation of reconstructions spliced into the model (`ctxdep evaluate`);
// and the per-feature context-dependence report (`ctxdep report`).
//
// Shape key: F features, C = d_model, N = d_mlp.
package analysis
