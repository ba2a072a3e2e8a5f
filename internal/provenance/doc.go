// Package provenance identifies the inputs of a result: a file's path, size
// and SHA-256 content hash. Every artifact ctxdep writes records the
// provenance of the model, transcoder and data it came from, so a mismatch
// is detected before work starts.
//
// Hash reads a file whole and returns its File (absolute path, size,
// content hash). Listing identifies a corpus too large to hash by content
// from its files' names, sizes and modification times. Same compares two
// Files by content. A HashCache remembers the hashes of unchanged files
// across runs (keyed by path, size, times, inode and device) and takes the
// hash of a hub-cache blob from its name, without reading either.
//
// Invariants: Same ignores paths (a moved file is the same input) and
// compares hash and size. A Listing's hash changes when a file is added,
// removed, resized, touched or reordered, but not when one is edited
// keeping its size and modification time; its Size is the files' total.
package provenance
