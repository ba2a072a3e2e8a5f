// Package owt will read OpenWebText (JSON lines, .txt directories, parquet,
// the original tar archives), reproduce the Hugging Face streaming shuffle,
// tokenize with GPT-2's BPE and cut rows as TransformerLens's
// tokenize_and_concatenate does (SPEC §2.5, §2.6, §5). It is tracked by its
// own issue; nothing here is implemented yet. cachebuild.Rows is the seam
// it plugs into.
package owt
