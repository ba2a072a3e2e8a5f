// Package transcoder loads the per-layer transcoders of Dunefsky et al.
// (the real torch.save pickles of pchlenski/gpt2-transcoders and
// their _log_feature_sparsity.pt files) and transcoders saved by SAELens
// (a directory of cfg.json and sae_weights.safetensors, ReLU or JumpReLU),
// and encodes MLP inputs to sparse feature activations and decodes them
// back.
//
// The two formats differ in their biases: the pickles subtract b_dec from
// the input and add b_dec_out to the output; SAELens transcoders subtract
// nothing and add b_dec. A Transcoder holds both as BDec (zero for SAELens)
// and BDecOut.
//
// Shape key: M rows (tokens), C = DIn = DOut (768 for GPT-2 small), F =
// DSAE features (24,576).
//
// Sparse activations are CSR (Acts): row r's active features are
// Indices[Indptr[r]:Indptr[r+1]], ascending, with their values (all > 0).
//
// Invariants: Encode keeps exactly the features whose pre-activation is
// > 0 (so never a NaN), lists the rows in input order, and its bits do not
// depend on GOMAXPROCS (kernels.MatMul, then one goroutine per row); they
// may depend on the rows encoded in the same call, whose GEMM runs over
// chunks of up to 512 rows from the call's first. Decode sums each row's
// active decoder rows in float64, in feature order, and rounds once to
// float32. Load checks every tensor's shape against W_enc and W_dec, and
// against the pickled cfg where it has the fields, and refuses a plain SAE
// (cfg.is_transcoder false); LoadSAELens checks the same against cfg.json
// and refuses skip transcoders and input normalisations it cannot apply.
// With a Threshold (JumpReLU) Encode keeps the features whose
// pre-activation exceeds both 0 and the threshold. An Encoder is not safe
// for concurrent use.
package transcoder
