// Package owt reads OpenWebText as documents, in the order the notebook's
// Hugging Face pipeline saw them, and nanoGPT's token files as rows.
// Tokenisation and tokenize_and_concatenate's row cutting
// live downstream; this package ends at documents (strings) and at token
// rows from .bin files.
//
// # Documents
//
// [Open] takes a file or a directory and detects the layout ([Format]):
//
//   - owt-tar: the original subsets/urlsf_subsetNN.tar — a tar of .xz
//     members, each an xz-compressed tar of .txt documents. Members are read
//     in tar order (not name order): outer regular files ending in ".xz",
//     inner regular files ending in ".txt"; at both levels base names
//     starting with "." or "__" are skipped, as datasets' _iter_tar does.
//     Compression is sniffed from the bytes (gzip, bzip2, xz, lzma, zstd or
//     none), as Python's tarfile "r|*" does.
//   - txt: .txt files, one document each.
//   - jsonl: JSON lines (or one JSON array of objects) with a "text" field;
//     gzip, zstd, xz and bzip2 compression are detected from the bytes.
//   - parquet: a top-level string column "text" (HF's converted layouts).
//
// A directory is read as its files of one layout in byte-wise name order
// (urlsf_subset00 … 20, train-00000-of-00080 …), which is the order of the
// loading script's URL list and of HF's data_files. Hidden files and
// subdirectories are ignored; a directory that mixes layouts is an error
// unless Options.Format picks one.
//
// Document text: .txt documents (from archives or directories) get the
// loading script's clean-up: UTF-8 decoding, every run of three or more
// '\n' replaced by "\n\n", then Python's str.strip() (which also strips
// U+001C–U+001F). JSON and parquet text is returned as stored: those files
// hold already-cleaned text. Bytes that are not valid UTF-8 are replaced by
// U+FFFD per maximal ill-formed subpart, exactly as Python's
// errors="replace" does, and counted in Stats.Replaced (the HF script
// decodes strictly and would stop). Empty documents are returned, as HF
// yields them, and counted in Stats.Empty. A JSON record whose text is
// null, a blank JSON line and every skipped archive member or directory
// entry are counted in Stats.Skipped by reason; a record without a "text"
// field, a "text" that is not a string, malformed JSON, a parquet file
// without a string "text" column, a corrupt or truncated compressed stream
// or tar, or a corpus with no document at all is an error naming the file
// (and line, element or member).
//
// # Shuffle
//
// With Options.ShuffleBuffer = B > 0 and Seed = s the documents come out as
// from load_dataset(..., streaming=True).shuffle(seed=s, buffer_size=B) in
// datasets 2.20, epoch 0:
//
//  1. the file list (HF's shards: one per archive, parquet or JSON file, or
//     .txt file) is permuted by a fresh numpy default_rng(s):
//     perm = list(range(n)); rng.shuffle(perm); file k of the stream is
//     file perm[k] ([ShardOrder]);
//  2. a second fresh copy of the generator drives a buffer of B documents:
//     indices come from rng.integers(0, B, size=1000), a block drawn only
//     when an index is needed and the previous block is used up; once the
//     buffer is full each new document x yields buffer[i] and takes its
//     place; at the end rng.shuffle(buffer) (the same rng, continuing) and
//     the buffer is yielded in order.
//
// B = 0 turns both steps off: files in name order, documents in file
// order. B = 1 permutes the files only. The numpy generator
// ([Generator]: SeedSequence → PCG64, next64/next32, integers by Lemire's
// method, shuffle by masked rejection) is bit-exact with numpy 1.24; the
// tests check it against numpy-generated vectors.
//
// Memory is bounded by the shuffle buffer (B documents) plus one decoded
// page, xz dictionary or JSON line, and one document is bounded by
// Options.MaxDocBytes; the directory listing (one name per file) is the
// only thing that grows with the corpus.
//
// # Token rows
//
// [OpenBin] reads nanoGPT's train.bin / val.bin (headerless little-endian
// uint16 ids, each document followed by 50256) as [BinRows], rows of R =
// RowLen tokens (default 128): 50256 followed by the next R−1 ids of the
// stream (optionally with every 50256 dropped first). Shape key: rows
// (N, R), N = ⌊stream tokens / (R−1)⌋; the tail that does not fill a row is
// not read. BinRows implements cachebuild.Rows and reads by offset; ids ≥
// 50257 are errors naming the file and byte offset. This stream is
// comparable to, not identical with, the notebook's.
package owt
