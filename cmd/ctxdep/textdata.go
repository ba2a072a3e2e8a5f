package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/bpe"
	"github.com/ctxdep/ctxdep/internal/owt"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/tokrows"
)

// dataOptions are the flags of text input (`ctxdep tokenize --help`), shared by
// tokenize, cache build --data and fit --data.
type dataOptions struct {
	shuffleBuffer int
	seed          uint64
	maxLength     int
	format        string
	tokenizer     string
}

// The shuffle seed is --shuffle-seed everywhere; oldSeedFlag is the
// command's former spelling (--seed in tokenize and cache build,
// --data-seed in fit, whose --init-seed seeds the initialisation), kept as
// a hidden deprecated alias.
func addDataFlags(f *pflag.FlagSet, o *dataOptions, oldSeedFlag string) {
	f.IntVar(&o.shuffleBuffer, "shuffle-buffer", owt.DefaultShuffleBuffer, "Hugging Face streaming shuffle buffer (0 disables the shuffle)")
	f.Uint64Var(&o.seed, "shuffle-seed", owt.DefaultSeed, "seed of the streaming shuffle (numpy default_rng)")
	deprecatedAlias(f, oldSeedFlag, "shuffle-seed", func(name string) { f.Uint64Var(&o.seed, name, owt.DefaultSeed, "") })
	f.IntVar(&o.maxLength, "max-length", tokrows.DefaultMaxLength, fmt.Sprintf("tokens per row, BOS included (2..%d; at most the model's context in cache build and fit)", maxRowTokens))
	f.StringVar(&o.format, "format", "", "corpus layout: jsonl, parquet, owt-tar or txt (default: from the path)")
	f.StringVar(&o.tokenizer, "tokenizer", "", "directory with a Hugging Face tokenizer.json or vocab.json + merges.txt (default: GPT-2's embedded BPE)")
}

// noteUnusedDataFlags notes each text-input flag of addDataFlags that the
// user set on a run without --data (cache build --tokens, fit --cache),
// which takes its rows as they are: the flag changes nothing.
func noteUnusedDataFlags(g *globalOptions, f *pflag.FlagSet, oldSeedFlag string) {
	for _, name := range []string{"shuffle-buffer", "shuffle-seed", oldSeedFlag, "max-length", "format", "tokenizer"} {
		if f.Changed(name) {
			g.notef("note: --%s applies to --data only; this run's rows are taken as they are", name)
		}
	}
}

// textRows streams token rows from a text corpus: documents in the Hugging
// Face streaming order, tokenized as tokenize_and_concatenate.
type textRows struct {
	reader *owt.Reader
	stream *tokrows.Stream
	prov   provenance.File
}

// check checks the flags of text input: a usage error for a --max-length
// below 2 or above maxRowTokens, a negative --shuffle-buffer, or an
// unknown --format.
func (o dataOptions) check() error {
	switch {
	case o.maxLength < 2:
		return usagef("--max-length %d: want at least 2 (BOS and one token)", o.maxLength)
	case o.maxLength > maxRowTokens:
		return usagef("--max-length %d: want at most %d tokens per row", o.maxLength, maxRowTokens)
	case o.shuffleBuffer < 0:
		return usagef("--shuffle-buffer %d: want 0 (no shuffle) or a positive count", o.shuffleBuffer)
	}
	switch owt.Format(o.format) {
	case "", owt.FormatJSONL, owt.FormatParquet, owt.FormatTar, owt.FormatTxt:
		return nil
	}
	return usagef("--format %q: want %s, %s, %s or %s", o.format, owt.FormatJSONL, owt.FormatParquet, owt.FormatTar, owt.FormatTxt)
}

// checkContext checks --max-length against the context of the model that
// reads the rows (n_positions nCtx): a usage error when rows are longer.
func (o dataOptions) checkContext(nCtx int) error {
	if o.maxLength > nCtx {
		return usagef("--max-length %d is longer than the model's context of %d", o.maxLength, nCtx)
	}
	return nil
}

// openText opens the corpus at path for rows of o.maxLength tokens, after
// checking o's numbers.
func openText(path string, o dataOptions) (*textRows, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(o.tokenizer)
	if err != nil {
		return nil, err
	}
	r, err := owt.Open(path, owt.Options{ShuffleBuffer: o.shuffleBuffer, Seed: o.seed, Format: owt.Format(o.format)})
	if err != nil {
		return nil, err
	}
	prov, err := provenance.Listing(path, r.Files())
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("data: %w", err)
	}
	st := tokrows.New(tok, r.Next, o.maxLength)
	st.Snapshot = func() any { return r.Stats() } // on the stream's goroutine, which alone calls r.Next
	return &textRows{reader: r, stream: st, prov: prov}, nil
}

func loadTokenizer(dir string) (*bpe.Tokenizer, error) {
	if dir == "" {
		return bpe.GPT2()
	}
	const takes = "a directory holding a Hugging Face tokenizer.json, or vocab.json and merges.txt"
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("--tokenizer %s: no such directory (--tokenizer takes %s)", dir, takes)
	case err != nil:
		return nil, fmt.Errorf("--tokenizer %s: %w", dir, err)
	case !fi.IsDir():
		hint := ""
		if b := filepath.Base(dir); b == "tokenizer.json" || b == "vocab.json" || b == "merges.txt" {
			hint = fmt.Sprintf(" (here %s)", filepath.Dir(dir))
		}
		return nil, fmt.Errorf("--tokenizer %s is a file: --tokenizer takes %s%s", dir, takes, hint)
	}
	return bpe.FromFiles(dir)
}

// Next fills one row.
func (t *textRows) Next(dst []int32) error { return t.stream.Next(dst) }

// Close stops the tokenizer and closes the corpus.
func (t *textRows) Close() {
	t.stream.Close()
	t.reader.Close()
}

// readerStats returns what the reader had read for the rows used: all of
// it when the stream ended, else as of the batch the last row came from
// (the tokenizer's goroutine reads ahead by a timing, so its own counts
// would vary from run to run). It stops the stream first: the reader is
// then no longer in use.
func (t *textRows) readerStats() owt.Stats {
	ended := t.stream.Ended()
	t.stream.Close()
	if snap, ok := t.stream.Snap().(owt.Stats); ok && !ended {
		return snap
	}
	return t.reader.Stats()
}

// summary describes what was read, for the log, once the rows are done (it
// stops the stream).
func (t *textRows) summary() string {
	rs, ts := t.readerStats(), t.stream.Stats()
	s := fmt.Sprintf("%d documents from %d file(s)", rs.Documents, rs.Files)
	if rs.Empty > 0 || rs.Replaced > 0 {
		s += fmt.Sprintf(" (%d empty, %d with invalid UTF-8 replaced)", rs.Empty, rs.Replaced)
	}
	for _, reason := range slices.Sorted(maps.Keys(rs.Skipped)) {
		s += fmt.Sprintf(", %d skipped (%s)", rs.Skipped[reason], reason)
	}
	return s + fmt.Sprintf("; %d tokens in %d batches, %d EOT removed, %d remainder tokens dropped", ts.Tokens, ts.Batches, ts.EOTRemoved, ts.Discarded)
}

// counts reports what the rows used were read from, for the cache
// manifest, once the rows are done (it stops the stream): with --n-tokens,
// the documents up to the end of the batch of 1,000 the last row came
// from, the same on every run.
func (t *textRows) counts() map[string]int64 {
	rs, ts := t.readerStats(), t.stream.Stats()
	c := map[string]int64{"files": int64(rs.Files), "documents": rs.Documents, "empty_documents": rs.Empty,
		"invalid_utf8_replaced": rs.Replaced, "rows": ts.Rows, "tokens_discarded": ts.Discarded}
	for reason, n := range rs.Skipped {
		c["skipped: "+reason] = n
	}
	return c
}

func tokenizerName(dir string) string {
	if dir == "" {
		return "gpt2 (r50k_base, embedded)"
	}
	return dir
}
