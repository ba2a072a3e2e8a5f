// Package midcoder fits the midcoder of SPEC §4.2 (the notebook's version,
// michaelttpearce/transcoder-exploration midcoder.py at f9294c2): trainable
// mid vectors W_mid (F, C) and b_mid (C) such that the frozen block-L MLP
// applied to mid = acts @ W_mid + b_mid reproduces y = blocks.L.hook_mlp_out:
//
//	out  = act(mid @ W_in + b_in) @ W_out + b_out   (act: relu, or gelu_new)
//	loss = mean over M·C of (out − y)²;  loss_norm = loss / mean(y²)
//
// trained with AdamW exactly as torch's (decoupled decay, bias corrections,
// eps outside the square root) and a cosine schedule stepped once per
// epoch.
//
// Shape key: M rows (B·T tokens) per step, C = d_model, N = d_mlp, F =
// transcoder features. acts are the transcoder's sparse activations (CSR,
// tens to hundreds active of F per row): the forward product and the W_mid
// gradient use only active rows (gather and scatter); the AdamW update still
// touches every parameter at every step, as torch does.
package midcoder
