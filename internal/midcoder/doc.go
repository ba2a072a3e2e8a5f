// Package midcoder will fit the midcoder of SPEC §4.2: mid vectors W_mid
// (F, C) and b_mid (C) such that the block-L MLP applied to
// acts(x) @ W_mid + b_mid reproduces y, with AdamW and a cosine schedule,
// using the sparsity of the transcoder's activations. It is tracked by its
// own issue; nothing here is implemented yet.
package midcoder
