// Package midcoder fits the notebook's midcoder (the notebook's version,
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
//
// Invariants: Trainer.Step computes what DenseStep, the reference in
// PyTorch's dense formulation, computes, up to float32 summation order. A
// step's bits do not depend on GOMAXPROCS: each row of mid is gathered by
// one goroutine, in the row's feature order; each feature's W_mid
// gradient is summed by one goroutine over its rows in ascending order;
// b_mid's is summed in float64 in row order; the GEMMs are kernels.MatMul,
// whose cut follows the shape alone. (With gelu_new they may depend on the
// CPU: GeluNew's assembly kernel and its Go path round differently.) A fit
// resumed from its checkpoint (parameters, AdamW moments and step count,
// and the fit's State) ends bit for bit where an uninterrupted fit does,
// and a checkpoint is taken up only under the same Key (settings and input
// hashes). The learning rate follows torch's recursive CosineAnnealingLR
// (CosineNext) to the last bit, and a non-finite loss stops the fit with a
// NonFiniteError.
package midcoder
