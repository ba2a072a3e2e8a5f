// Package inspect computes the statistics `ctxdep inspect-cache` reports:
// per-element and per-token statistics of a cache's x and y, and the
// quality of a transcoder on it (l0, mse, nmse, firing), reading the cache
// once through actcache.Reader (a shard in memory and the next one read
// ahead), so memory does not grow with the cache.
//
// Shape key: M cached tokens, C = d_model, F = transcoder features.
//
// Invariants: sums are accumulated in float64; a transcoder's activations
// are the cache's stored ones only when the manifest says they are this
// transcoder's (same SHA-256), and are otherwise encoded from x.
package inspect
