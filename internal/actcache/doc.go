// Package actcache is the on-disk activation cache of CLI.md's
// `cache build`: a directory with manifest.json and shards
// shard-NNNNN.safetensors, each holding, for S_i sequences of T tokens,
// `tokens` I32 (S_i, T), `x` (S_i, T, C) = blocks.L.ln2.hook_normalized and
// `y` (S_i, T, C) = blocks.L.hook_mlp_out in the manifest's dtype, and
// optionally the transcoder's sparse activations of x in CSR form
// (`acts_indptr` I64 (S_i·T+1), `acts_indices` I32 (nnz), `acts_values`
// F32 (nnz)).
//
// Invariants: a shard file exists only when complete (written to a
// temporary name and renamed); shard i holds sequences [i·P, i·P+S_i) of
// the input, P = the manifest's sequences_per_shard; each shard's
// safetensors metadata carries the build's settings key, so a resumed
// build keeps exactly the shards that the same settings produced.
package actcache
