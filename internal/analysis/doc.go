// Package analysis compares midcoders with what the transcoder alone
// implies. So far it holds the notebook's pinv baseline (SPEC §4.2):
// W_mid = W_dec @ pinv(W_in @ W_out), the mid vectors that would map each
// feature's decoder direction through the MLP if the MLP were linear.
//
// Shape key: F features, C = d_model, N = d_mlp.
package analysis
