// Package actcache is the on-disk activation cache that `ctxdep cache
// build` writes: a directory with manifest.json and shards
// shard-NNNNN.safetensors, each holding, for S_i sequences of T tokens,
// `tokens` I32 (S_i, T), `x` (S_i, T, C) = blocks.L.ln2.hook_normalized and
// `y` (S_i, T, C) = blocks.L.hook_mlp_out in the manifest's dtype, and
// optionally the transcoder's sparse activations of x in CSR form
// (`acts_indptr` I64 (S_i·T+1), `acts_indices` I32 (nnz), `acts_values`
// F32 (nnz)).
//
// A sharded build (README, "Caching on a cluster") has N workers write into one
// directory: worker i of N caches input rows [⌊i·R/N⌋, ⌊(i+1)·R/N⌋) as
// wIIIII-of-NNNNN-shard-KKKKK.safetensors and keeps its own manifest
// worker-IIIII-of-NNNNN.json (a Manifest with Worker set); Merge checks the
// workers and writes manifest.json listing their shards (Workers set), which
// readers open like any cache. Verify re-hashes a cache of either kind.
//
// Invariants: a shard file exists only when complete (written to a
// temporary name and renamed); a manifest's shards hold consecutive input
// rows from its data.first_row (0 for a cache, the worker's first row for a
// worker); in a single-machine build shard i holds rows [i·P, i·P+S_i), P =
// sequences_per_shard; each shard's safetensors metadata carries the
// build's settings key (worker index and count included), so a resumed
// build keeps exactly the shards that the same settings produced, and
// workers of another count are never mistaken for its own.
package actcache
