// Package cachebuild runs GPT-2 over token rows to block L and writes the
// activation cache (x = blocks.L.ln2.hook_normalized, y =
// blocks.L.hook_mlp_out, optionally the transcoder's sparse activations of
// x) shard by shard through actcache, resuming an interrupted build. With
// Options.Shard it is one worker of a sharded build and caches only its
// range of rows. Measure times the same forward pass for `cache plan`.
//
// Build takes its rows from a Rows (Int32Rows in memory, a token file, or
// StreamRows over the text pipeline) and computes each batch with a Pass:
// NewCPUPass, or a GPU backend's. NewPlan sizes a build before it runs
// (rows, shards, bytes, and the rows each worker computes, WorkerLoad).
//
// Shape key: R input rows of T tokens, B rows per forward batch, P rows per
// shard, C = d_model, N workers.
//
// Invariants: every row is computed in its batch of one batch grid that
// starts at the build's row 0 (actcache.BatchGrid: batch k holds rows
// [k·B, k·B+B), the last one shorter), and each batch is computed whole,
// whatever the shards, the workers or the resumed runs: a shard or a
// worker's range that starts or ends inside a batch takes its rows from
// the whole batch, and the batch's other rows are computed and dropped.
// BLAS kernels round a row differently depending on the rows that share
// its GEMM, so this is what keeps a build's bits, for a given Pass,
// independent of how the build is cut. A resumed build keeps the shards
// an earlier run completed and computes only the batches that hold rows
// of the others; shards appear only when complete. A build may also read
// its input to the end, its rows not counted in advance (NumRows −1, as
// StreamRows with n < 0 gives): it then reads each batch with ReadUpTo,
// and the input's end cuts the last batch and the last shard short. A
// sharded build needs its rows counted. Token ids are checked against the
// model's vocabulary before each batch runs. Batches are computed in
// order into two sets of buffers, and one goroutine copies each computed
// batch's rows into its shards and writes them, in order, while the next
// batch is computed: the shards and their bits are those of one batch
// after the other.
package cachebuild
