// Package safetensors reads and writes the safetensors container used by
// Hugging Face checkpoints and by ctxdep's own outputs
// (activation-cache shards, midcoder weights).
//
// Layout of a file:
//
//	[u64 little-endian N][N bytes of UTF-8 JSON header][data section]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]}, offsets relative to the first byte of the data section, end
// exclusive; an optional "__metadata__" entry maps strings to strings. Data
// are little-endian and C-ordered (row-major): for shape (d0, d1, …, dk) the
// last index varies fastest.
//
// Invariants that [Parse] enforces, following the reference implementation
// (the safetensors Rust crate behind Python's safetensors library):
//   - N ≤ 100,000,000 and 8+N ≤ file size; the header is valid UTF-8 and one
//     JSON object, possibly followed by spaces;
//   - every dtype is known and every shape's byte size, computed with
//     overflow checks, equals end−begin;
//   - sorted by begin, the tensors tile the data section exactly: no
//     overlap, no gap, no trailing bytes.
//
// So every tensor a [File] reports lies inside the file, and reading it can
// never allocate more than the file's size. Bad input is an error naming the
// file and the tensor, never a panic.
//
// [Open] memory-maps the file read-only on Unix-like systems (and reads it
// into memory elsewhere); the slices [File.Raw] returns are views into that
// mapping, valid until [File.Close], and must not be modified. Truncating a
// file while it is mapped makes later reads fault (SIGBUS): ctxdep only
// replaces files by renaming, which leaves existing mappings intact.
//
// [OpenReader] reads and checks the header only (the same invariants) and
// reads tensors, whole or in parts, with positioned reads straight into the
// caller's memory: one copy from the page cache, no mapping to fault in,
// and tensors never asked for are never read. ctxdep loads GPT-2 this way.
//
// [Writer] streams a file: the header is computed from the declared tensors
// up front, data follow in declared order, and the result appears at its path
// only when [Writer.Close] succeeds (temporary file, fsync, rename). The
// header is padded with spaces to a multiple of 8 bytes, so the data section
// is 8-byte aligned, as Python's safetensors writes it.
package safetensors
